#[littleboss::main(name = "myblog", lameduck = "5 seconds")]
async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    lb.ready();
    Ok(())
}
