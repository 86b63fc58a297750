// Every mistake is reported in one compile, not only the first.
#[littleboss::main(
    name = "myblog",
    listener(http = "tcp:80"),
    settle = "1.5s",
    persist = 1
)]
async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    lb.ready();
    Ok(())
}
