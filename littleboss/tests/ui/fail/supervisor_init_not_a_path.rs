#[littleboss::main(name = "svc", supervisor_init = "init")]
fn main() {}
