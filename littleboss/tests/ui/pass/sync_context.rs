// Compiled, not run: see async_context_io_result.rs.
#![deny(warnings)]

mod program {
    #[littleboss::main(name = "sync", listener(http = "tcp:127.0.0.1:0"))]
    pub fn main(lb: littleboss::Context) -> Result<(), std::io::Error> {
        let listener = lb.std_tcp_listener("http")?;
        lb.ready();
        drop(listener);
        Ok(())
    }
}

fn main() {
    let _: fn() -> std::process::ExitCode = program::main;
}
