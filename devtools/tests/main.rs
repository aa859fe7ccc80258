//! `keel-load` as devnet/load runs it: what it refuses before sending anything. Being an
//! integration test of this package also makes `cargo test` build the `keel-load` binary,
//! which the devnet chaos test (cli/tests/devnet/chaos.rs) runs through devnet/load — on a
//! fresh machine nothing else builds it.

use std::path::Path;
use std::process::Command;

const KEEL_LOAD: &str = env!("CARGO_BIN_EXE_keel-load");

/// Runs keel-load on `home`; its exit status and stderr.
fn load(home: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(KEEL_LOAD)
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .expect("keel-load runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_home_without_validators_is_refused_with_the_command_to_start_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ok, err) = load(dir.path(), &[]);
    assert!(!ok);
    assert!(
        err.contains("no node homes under") && err.contains("keel devnet --home"),
        "{err}"
    );
}

#[test]
fn an_accounts_file_without_keys_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node0 = dir.path().join("node0");
    std::fs::create_dir_all(&node0).expect("node dir");
    std::fs::write(
        node0.join("config.toml"),
        keel_node::config::NodeConfig::default().to_toml(),
    )
    .expect("config");
    std::fs::write(dir.path().join("accounts.json"), "[{}]").expect("accounts");
    let (ok, err) = load(dir.path(), &["--duration", "1"]);
    assert!(!ok);
    assert!(
        err.contains("accounts.json entry without key_file"),
        "{err}"
    );
    // A rate that is not a number never reaches the cluster either.
    let (ok, err) = load(dir.path(), &["--rate", "fast"]);
    assert!(!ok);
    assert!(err.contains("--rate"), "{err}");
}
