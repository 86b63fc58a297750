// Compiled, not run: see async_context_io_result.rs.
#![deny(warnings)]

mod program {
    fn init() -> Result<(), std::io::Error> {
        Ok(())
    }

    #[littleboss::main(
        name = "all-options_1",
        listener(
            https = "tcp::443",
            dns = "udp:127.0.0.1:5353",
            admin = "tcp6:[::1]:8080",
            off = "tcp4:",
            api = "unix:/run/all-options.sock",
            metrics = "tcp:127.0.0.1:9100"
        ),
        lameduck = "5s",
        persist = true,
        fallback = false,
        calls_ready = true,
        settle = "250ms",
        ready_timeout = "1m",
        probation = "30s",
        probation_5xx = "5%",
        standby = true,
        state_timeout = "10s",
        flavor = "multi_thread",
        flag = "lb",
        user = "nobody",
        group = "nogroup",
        supervisor_init = init,
        unix_mode = "0660",
        metrics = "metrics"
    )]
    #[allow(clippy::needless_return)]
    pub async fn main(lb: littleboss::Context) -> Result<(), String> {
        lb.ready();
        return Ok(());
    }
}

fn main() {
    let _: fn() -> std::process::ExitCode = program::main;
}
