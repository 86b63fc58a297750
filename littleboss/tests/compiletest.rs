//! What `#[littleboss::main]` accepts, and the errors it gives for what it does not.
//!
//! Regenerate the `.stderr` files with
//! `TRYBUILD=overwrite cargo test -p littleboss --test compiletest`, then read them.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
