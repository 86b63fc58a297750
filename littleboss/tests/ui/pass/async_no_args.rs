// Compiled, not run: see async_context_io_result.rs.
#![deny(warnings)]

mod program {
    /// An async main with no argument and no return type.
    #[littleboss::main(name = "idle")]
    pub async fn main() {}
}

fn main() {
    let _: fn() -> std::process::ExitCode = program::main;
}
