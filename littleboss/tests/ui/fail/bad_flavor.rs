#[littleboss::main(name = "myblog", flavor = "single_thread")]
async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    lb.ready();
    Ok(())
}
