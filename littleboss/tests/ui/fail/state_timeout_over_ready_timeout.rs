// The new process takes its state before it is ready: its state_timeout is at most
// its ready_timeout (declared, or the default of 30s).
#[littleboss::main(name = "myblog", calls_ready = true, state_timeout = "45s")]
async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    let _state = lb.take_state().await;
    lb.ready();
    Ok(())
}
