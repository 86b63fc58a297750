#[littleboss::main(name = "svc", flag = "--lb")]
fn main() {}
