#[littleboss::main(
    name = "myblog",
    listener(http = "tcp::80"),
    listener(https = "tcp::443", http = "tcp::8080")
)]
async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    lb.ready();
    Ok(())
}
