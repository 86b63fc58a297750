// An identifier the command line could not spell as `--NAME=ADDR` the way the runtime
// matches flags.
#[littleboss::main(name = "cafe", listener(café = "tcp::8080"))]
fn main() {}
