#[littleboss::main(name = "myblog", listener(http = "tcp:127.0.0.1:65536"))]
async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    lb.ready();
    Ok(())
}
