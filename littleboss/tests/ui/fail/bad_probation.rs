#[littleboss::main(name = "myblog", probation = "2h", probation_5xx = "150%")]
async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    lb.ready();
    Ok(())
}
