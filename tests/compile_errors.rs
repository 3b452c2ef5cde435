//! The compile errors a newcomer meets say what to do, and point at their own code: each
//! program in `tests/ui/` must fail to compile with the message beside it (`*.stderr`).
//!
//! To accept new messages after a deliberate change: `TRYBUILD=overwrite cargo test --test
//! compile_errors`, then read the diff.

/// The compiler these messages were recorded with: other versions word them differently.
const RECORDED_WITH: &str = "rustc 1.95.";

#[test]
fn misuse_fails_to_compile_with_a_message_that_explains() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if !version.starts_with(RECORDED_WITH) {
        eprintln!("skipped: messages recorded with {RECORDED_WITH}x, this is {version}");
        return;
    }
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
