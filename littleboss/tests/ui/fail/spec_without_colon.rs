#[littleboss::main(name = "myblog", listener(http = "443"))]
async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    lb.ready();
    Ok(())
}
