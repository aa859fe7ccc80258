//! `keel-statetest <path>…`: run GeneralStateTests fixture files or folders through keel's
//! EVM environment; one line per failing case, then `N passed, M failed`. Exits 1 if any
//! case failed.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let paths: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if paths.is_empty() {
        eprintln!("usage: keel-statetest <fixture file or folder>…");
        return ExitCode::from(2);
    }
    let (mut passed, mut failed, mut skipped) = (0usize, 0usize, 0usize);
    for path in &paths {
        let files = match keel_statetest::fixture_files(path) {
            Ok(files) => files,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        for file in files {
            match keel_statetest::run_file(&file) {
                Ok(results) => {
                    for r in results {
                        if r.skipped {
                            skipped += 1;
                            continue;
                        }
                        match r.failure {
                            None => passed += 1,
                            Some(why) => {
                                failed += 1;
                                let (d, g, v) = r.indexes;
                                println!(
                                    "FAIL {} {} d{d} g{g} v{v}: {why}",
                                    file.display(),
                                    r.name
                                );
                            }
                        }
                    }
                }
                Err(e) => {
                    failed += 1;
                    println!("FAIL {}: {e}", file.display());
                }
            }
        }
    }
    if skipped > 0 {
        println!("{skipped} skipped (pre-Petersburg Constantinople entries, and fixtures whose values exceed 256 bits; see docs/statetest.md)");
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
