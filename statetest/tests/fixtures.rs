//! The Ethereum state-test fixtures through keel's EVM environment: the vendored Cancun
//! folder always, and the full shared fixture set (../shared/fixtures) where it is present.

use std::path::{Path, PathBuf};

fn run(dir: &Path) -> (usize, usize, Vec<String>) {
    let (mut passed, mut skipped, mut failures) = (0, 0, Vec::new());
    for file in keel_statetest::fixture_files(dir).expect("fixture files") {
        match keel_statetest::run_file(&file) {
            Ok(results) => {
                for r in results {
                    match (r.skipped, r.failure) {
                        (true, _) => skipped += 1,
                        (false, None) => passed += 1,
                        (false, Some(why)) => failures.push(format!(
                            "{} {} {:?}: {why}",
                            file.display(),
                            r.name,
                            r.indexes
                        )),
                    }
                }
            }
            Err(e) => failures.push(e),
        }
    }
    (passed, skipped, failures)
}

#[test]
fn vendored_cancun_fixtures_pass() {
    let dir = manifest_dir().join("fixtures/Cancun");
    let (passed, _, failures) = run(&dir);
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(passed >= 170, "only {passed} cases ran");
}

#[test]
fn shared_fixture_set_passes() {
    let dir: PathBuf = std::env::var_os("KEEL_STATE_TESTS").map_or_else(
        || manifest_dir().join("../../shared/fixtures/ethereum-state-tests"),
        PathBuf::from,
    );
    if !dir.exists() {
        // A clone outside the project tree has no ../shared; the vendored test above still
        // runs real fixtures. Set KEEL_STATE_TESTS to point at a copy.
        eprintln!("shared fixtures not found at {}; skipped", dir.display());
        return;
    }
    let (passed, skipped, failures) = run(&dir);
    eprintln!(
        "{passed} passed, {skipped} skipped, {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(passed >= 11_000, "only {passed} cases ran");
}

/// The package directory of the running test. Read at run time (cargo sets it for every test
/// and bench process): the compile-time value can name another clone when clones share one
/// target directory, as the scripts' persistent `CARGO_TARGET_DIR` makes them do.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        std::path::PathBuf::from,
    )
}
