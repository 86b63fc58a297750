#[littleboss::main(name = "svc", flag = "lb", listener(lb = "tcp::80"))]
fn main() {}
