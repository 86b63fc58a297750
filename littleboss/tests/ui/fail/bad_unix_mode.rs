#[littleboss::main(name = "svc", unix_mode = "0999")]
fn main() {}
