#[littleboss::main(name = "myblog", persist = "yes")]
async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    lb.ready();
    Ok(())
}
