// The supervisor waits `ready_timeout` for the hello too: zero would fail every child.
#[littleboss::main(name = "myblog", calls_ready = true, ready_timeout = "0s")]
async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    lb.ready();
    Ok(())
}
