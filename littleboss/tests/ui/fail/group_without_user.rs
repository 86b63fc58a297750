#[littleboss::main(name = "svc", group = "nogroup")]
fn main() {}
