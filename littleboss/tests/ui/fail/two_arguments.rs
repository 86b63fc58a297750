#[littleboss::main(name = "myblog")]
async fn main(lb: littleboss::Context, port: u16) -> std::io::Result<()> {
    lb.ready();
    let _ = port;
    Ok(())
}
