// A wait is at most an hour: past that the supervisor's deadlines would overflow.
#[littleboss::main(
    name = "myblog",
    lameduck = "18446744073709551615ms",
    settle = "61m",
    ready_timeout = "3600001ms"
)]
async fn main(lb: littleboss::Context) -> std::io::Result<()> {
    lb.ready();
    Ok(())
}
