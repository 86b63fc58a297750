#[littleboss::main(name = "myblog", lameduck = "1s", persist = true, lameduck = "2s")]
async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    lb.ready();
    Ok(())
}
