// The pass cases are compiled and run by trybuild. Running a littleboss program binds
// its listeners and starts serving, so the attribute goes on a `main` in a module, and
// the real `main` only checks that the generated one is a valid program entry point.
#![deny(warnings)]

mod program {
    #[littleboss::main(name = "myblog", listener(http = "tcp:127.0.0.1:0"))]
    pub(crate) async fn main(lb: littleboss::Context) -> std::io::Result<()> {
        let _listener = lb.tcp_listener("http")?;
        lb.ready();
        lb.lameduck().await;
        Ok(())
    }
}

fn main() {
    let _: fn() -> std::process::ExitCode = program::main;
}
