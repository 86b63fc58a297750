#[littleboss::main(name = "myblog", flavor = "current_thread")]
fn main(lb: littleboss::Context) -> std::io::Result<()> {
    lb.ready();
    Ok(())
}
