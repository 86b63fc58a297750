#[littleboss::main(name = "myblog", port = 80)]
async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    lb.ready();
    Ok(())
}
