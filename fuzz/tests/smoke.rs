//! The CI fuzz smoke run: every target on its committed corpus (`fuzz/corpus/<target>`),
//! then seeded mutations of it for a bounded time per target (`KEEL_FUZZ_SECS`, default 2).
//! The seed is printed; `KEEL_FUZZ_SEED=<seed>` replays a run; `KEEL_FUZZ_TARGETS=a,b` runs
//! only those targets (a long run of the node targets, which libFuzzer does not build). A
//! failing input is printed in hex and written to `$CARGO_TARGET_TMPDIR/fuzz-<target>-<seed>.bin`.
//!
//! The long, coverage-guided campaign is `scripts/fuzz` (libFuzzer, fuzz/libfuzzer).

use keel_fuzz::mutate::{mutate, Rng};
use keel_fuzz::{Target, TARGETS};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use wasmparser::ValType;

/// Seconds of mutations per target by default (CI's budget: about 40 s for all).
const DEFAULT_SECS_PER_TARGET: u64 = 2;
/// The committed corpus stays small (it is in the repository).
const MAX_CORPUS_BYTES: u64 = 200 * 1024;
/// Hex bytes of a failing input printed at most (the file has all of it).
const MAX_PRINTED_BYTES: usize = 4096;

fn corpus_root() -> PathBuf {
    manifest_dir().join("corpus")
}

fn corpus(name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_root().join(name);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let bytes = std::fs::read(&path).expect("a corpus file reads");
            (path.display().to_string(), bytes)
        })
        .collect();
    files.sort();
    files
}

fn seed() -> u64 {
    match std::env::var("KEEL_FUZZ_SEED") {
        Ok(text) => text.parse().expect("KEEL_FUZZ_SEED is a u64"),
        // Fixed, so CI fails only on a change of the code, never on the luck of a seed;
        // wider exploration is the long, coverage-guided campaign of `scripts/fuzz`.
        Err(_) => 0x6b65_656c,
    }
}

/// Whether `KEEL_FUZZ_TARGETS` (comma-separated; default all) selects `name`.
fn selected(name: &str) -> bool {
    std::env::var("KEEL_FUZZ_TARGETS")
        .map_or(true, |list| list.split(',').any(|t| t.trim() == name))
}

fn secs_per_target() -> u64 {
    std::env::var("KEEL_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SECS_PER_TARGET)
}

/// Runs one input; on a panic reports it and fails the test.
fn run(name: &str, target: Target, input: &[u8], origin: &str, seed: u64) {
    if catch_unwind(AssertUnwindSafe(|| target(input))).is_ok() {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let file = dir.join(format!("fuzz-{name}-{seed}.bin"));
    let _ = std::fs::write(&file, input);
    let shown = &input[..input.len().min(MAX_PRINTED_BYTES)];
    let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
    panic!(
        "fuzz target {name} failed on {origin} (KEEL_FUZZ_SEED={seed}); input ({} bytes, \
         saved to {}): {hex}",
        input.len(),
        file.display()
    );
}

#[test]
fn every_target_survives_its_corpus_and_mutations_of_it() {
    let seed = seed();
    let budget = Duration::from_secs(secs_per_target());
    println!("fuzz smoke: KEEL_FUZZ_SEED={seed}, {budget:?} per target");
    let started = Instant::now();
    for (index, &(name, target)) in TARGETS.iter().enumerate() {
        if !selected(name) {
            continue;
        }
        let files = corpus(name);
        assert!(!files.is_empty(), "{name}: the corpus is empty");
        for (path, bytes) in &files {
            run(name, target, bytes, path, seed);
        }
        let pool: Vec<Vec<u8>> = files.into_iter().map(|(_, b)| b).collect();
        let mut rng = Rng::new(seed ^ (index as u64).wrapping_mul(0x1000_0000_01B3));
        let deadline = Instant::now() + budget;
        let mut execs = 0u64;
        while Instant::now() < deadline {
            let base = &pool[rng.below(pool.len() as u64) as usize];
            let input = mutate(&mut rng, base, &pool);
            run(name, target, &input, &format!("mutation {execs}"), seed);
            execs += 1;
        }
        println!(
            "fuzz smoke: {name}: {} corpus inputs, {execs} mutations",
            pool.len()
        );
        assert!(execs > 0, "{name}: no mutation ran in {budget:?}");
    }
    println!("fuzz smoke: all targets in {:?}", started.elapsed());
}

#[test]
fn every_target_has_a_small_committed_corpus() {
    let mut total = 0u64;
    for &(name, _) in TARGETS {
        let files = corpus(name);
        assert!(!files.is_empty(), "{name}: no corpus in fuzz/corpus/{name}");
        total += files.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
    }
    assert!(
        total <= MAX_CORPUS_BYTES,
        "the committed corpus is {total} bytes, over {MAX_CORPUS_BYTES}"
    );
}

#[test]
fn the_mutator_is_seeded_and_changes_its_input() {
    let pool = vec![vec![1u8, 2, 3, 4, 5, 6, 7, 8], vec![9u8; 20]];
    let run = |seed| {
        let mut rng = Rng::new(seed);
        (0..200)
            .map(|i| mutate(&mut rng, &pool[i % 2], &pool))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
    let changed = run(7)
        .iter()
        .enumerate()
        .filter(|(i, m)| **m != pool[i % 2])
        .count();
    assert!(
        changed > 150,
        "only {changed} of 200 mutations changed the input"
    );
}

/// The seed files are what the seed builders produce today: an encoding change that would
/// leave the corpus exercising only the refusal of an old version fails here (regenerate
/// with `generate_corpus`).
#[test]
fn the_committed_seeds_are_current() {
    for &(name, target) in TARGETS {
        let dir = corpus_root().join(name);
        for (i, seed) in seeds(name).iter().enumerate() {
            let path = dir.join(format!("seed-{i:02}"));
            let committed = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (run generate_corpus)", path.display()));
            assert!(
                committed == *seed,
                "{} is stale: run generate_corpus",
                path.display()
            );
            target(seed);
        }
    }
}

fn seeds(name: &str) -> Vec<Vec<u8>> {
    let mut seeds = keel_fuzz::seeds::for_target(name);
    if name.starts_with("wasm_") {
        seeds.extend(wat_seeds());
    }
    seeds
}

/// Small WAT modules beside the contracts: the smallest valid module, and modules at the
/// edges validation checks (an import of every host function, a full data segment).
fn wat_seeds() -> Vec<Vec<u8>> {
    let host_imports: String = keel_exec_wasm::host_api::HOST_FUNCTIONS
        .iter()
        .map(|(name, params, results)| {
            let list = |v: &[ValType]| -> String {
                v.iter().map(|t| format!(" {}", wat_name(t))).collect()
            };
            format!(
                "(import \"keel\" \"{name}\" (func (param{}) (result{})))\n",
                list(params),
                list(results)
            )
        })
        .collect();
    let modules = [
        r#"(module (memory (export "memory") 1 1)
             (func (export "call") (param i32) (result i32) i32.const 0)
             (func (export "deploy") (param i32) (result i32) i32.const 0))"#
            .to_string(),
        format!(
            r#"(module {host_imports}
             (memory (export "memory") 1 32)
             (global $g (mut i64) (i64.const 0))
             (table 4 funcref)
             (data (i32.const 0) "keel")
             (func $f (param i32) (result i32)
               local.get 0
               if (result i32) i32.const 1 else i32.const 2 end
               block (result i32) i32.const 3 end
               i32.add
               loop $l global.get $g i64.const 1 i64.add global.set $g end)
             (func (export "call") (param i32) (result i32) local.get 0 call $f)
             (func (export "deploy") (param i32) (result i32) i32.const 0))"#
        ),
    ];
    modules
        .iter()
        .map(|text| wat::parse_str(text).expect("seed WAT parses"))
        .collect()
}

/// A host API value type's WAT name (the API has only integers).
fn wat_name(t: &ValType) -> &'static str {
    match t {
        ValType::I64 => "i64",
        _ => "i32",
    }
}

/// Writes the seed corpus (`seed-<n>` files). Run after changing an encoding:
/// `cargo test --profile ci --locked --workspace --test fuzz smoke:: -- --ignored generate_corpus`.
#[test]
#[ignore = "writes fuzz/corpus; run by hand when an encoding changes"]
fn generate_corpus() {
    for &(name, target) in TARGETS {
        let seeds = seeds(name);
        assert!(!seeds.is_empty(), "{name}: no seeds");
        let dir = corpus_root().join(name);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        for (i, seed) in seeds.iter().enumerate() {
            target(seed);
            std::fs::write(dir.join(format!("seed-{i:02}")), seed).expect("write seed");
        }
    }
}

/// The package directory of the running test. Read at run time (cargo sets it for every test
/// process): the compile-time value can name another clone when clones share one target
/// directory, as the scripts' persistent `CARGO_TARGET_DIR` makes them do.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        std::path::PathBuf::from,
    )
}
