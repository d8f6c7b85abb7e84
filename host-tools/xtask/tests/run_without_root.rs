//! `cargo xtask run --check` by a user who is not root (as root, the test drops to `nobody` with
//! `setpriv`): the isolated test network cannot be made, and it says so with the reason and
//! fails at once, before building or starting anything. (Without `--check`, `cargo xtask run`
//! falls back to `--bare` with the same reason; that decision is the `run` module's unit test,
//! since the fallback boots an appliance that stays up until Ctrl-C.)

use std::process::Command;

/// The unprivileged user and group the test runs the xtask as, when it runs as root.
const NOBODY: &str = "65534";

#[test]
fn check_without_root_says_the_isolated_network_cannot_be_made_and_why() {
    let xtask = env!("CARGO_BIN_EXE_xtask");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let output = if root {
        Command::new("setpriv")
            .args([&format!("--reuid={NOBODY}"), &format!("--regid={NOBODY}"), "--clear-groups", xtask, "run", "--check"])
            .output()
            .expect("setpriv runs (util-linux)")
    } else {
        Command::new(xtask).args(["run", "--check"]).output().expect("the xtask runs")
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "--check must fail without the isolated network: {stderr}");
    assert!(
        stderr.contains("--check: the demo needs the isolated test network, which cannot be made here: not root (effective user id "),
        "the reason is said: {stderr}"
    );
    assert!(!stderr.contains("demo: "), "nothing was set up: {stderr}");
}
