//! The compile errors a newcomer meets say what to do, and point at their own code: each
//! program in `tests/ui/` must fail to compile with the message beside it (`*.stderr`).
//!
//! To accept new messages after a deliberate change: `TRYBUILD=overwrite cargo test --test
//! compile_errors`, then read the diff.

#[test]
fn misuse_fails_to_compile_with_a_message_that_explains() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
