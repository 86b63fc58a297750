#[littleboss::main(listener(http = "tcp::80"), lameduck = "1s")]
async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    lb.ready();
    Ok(())
}
