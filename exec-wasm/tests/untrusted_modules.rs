//! Modules are untrusted bytes: validation and compilation of arbitrary mutations of a real
//! contract must end in a typed result, never a panic, and whatever validates must compile.

use keel_exec_wasm::{compile_artifact, validate, ValidationError};
use proptest::prelude::*;

fn token() -> Vec<u8> {
    let path = manifest_dir().join("../contracts/build/token.wasm");
    std::fs::read(path).expect("token.wasm")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mutated_modules_get_typed_results(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let mut module = token();
        for (at, byte) in flips {
            let i = at % module.len();
            module[i] = byte;
        }
        if cut % 4 == 0 {
            module.truncate(cut % module.len());
        }
        if validate(&module).is_ok() {
            prop_assert!(compile_artifact(&module).is_ok());
        }
    }

    #[test]
    fn random_bytes_are_malformed(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        prop_assert!(validate(&bytes).is_err());
    }
}

#[test]
fn the_checked_in_contracts_validate() {
    for name in ["token.wasm", "router.wasm", "compute.wasm"] {
        let path = manifest_dir().join("../contracts/build").join(name);
        let module = std::fs::read(path).expect("artifact");
        let facts = validate(&module).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(facts.memory_max_pages <= keel_exec_wasm::limits::MAX_MEMORY_PAGES);
    }
}

#[test]
fn a_constructor_export_must_have_the_entry_signature() {
    let module = wat::parse_str(
        r#"(module (memory (export "memory") 1 1)
             (func (export "deploy") (result i32) (i32.const 0))
             (func (export "call") (param i32) (result i32) (i32.const 0)))"#,
    )
    .expect("wat");
    assert_eq!(
        validate(&module),
        Err(ValidationError::MissingExport("deploy"))
    );
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
