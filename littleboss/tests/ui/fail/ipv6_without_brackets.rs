#[littleboss::main(name = "myblog", listener(http = "tcp6:::1:8080"))]
async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    lb.ready();
    Ok(())
}
