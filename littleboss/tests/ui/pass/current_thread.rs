// Compiled, not run: see async_context_io_result.rs.
#![deny(warnings)]

mod program {
    #[littleboss::main(name = "small", flavor = "current_thread")]
    pub async fn main(_lb: littleboss::Context) {
        tokio::task::yield_now().await;
    }
}

fn main() {
    let _: fn() -> std::process::ExitCode = program::main;
}
