#[littleboss::main(name = "myblog", listener(http = "tcp::8080"), metrics = "stats")]
async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    lb.ready();
    Ok(())
}
