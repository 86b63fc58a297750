// Compiled, not run: see async_context_io_result.rs.
#![deny(warnings)]

mod program {
    #[littleboss::main(
        name = "groups",
        listener(http = "tcp:127.0.0.1:0"),
        lameduck = "1s",
        listener(dns = "udp:127.0.0.1:0", r#type = "udp:")
    )]
    pub async fn main(lb: littleboss::Context) -> std::io::Result<()> {
        let _http = lb.tcp_listener("http")?;
        let _dns = lb.udp_socket("dns")?;
        Ok(())
    }
}

fn main() {
    let _: fn() -> std::process::ExitCode = program::main;
}
