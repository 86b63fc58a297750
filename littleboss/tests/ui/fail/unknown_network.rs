#[littleboss::main(name = "myblog", listener(http = "sctp::443"))]
async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    lb.ready();
    Ok(())
}
