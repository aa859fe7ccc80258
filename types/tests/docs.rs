//! The docs name only code that exists: every `MAX_…`/`MIN_…` constant named in README.md,
//! docs/*.md and the crate READMEs is declared in some Rust source of the workspace, and
//! every source path they name (`<dir>/src|tests|benches/….rs`) is a file. A renamed
//! constant or a moved file fails here instead of leaving a doc that misleads.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Folders never searched for sources (build output, dependencies, fuzz corpora).
const SKIPPED_DIRS: &[&str] = &["target", ".git", "node_modules", "corpus", "findings"];

fn root() -> PathBuf {
    manifest_dir()
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn docs(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md")];
    for dir in [root.join("docs"), root.to_path_buf()] {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let path = entry.path();
            if dir == root.join("docs") && path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            } else if dir == root && path.join("README.md").is_file() {
                files.push(path.join("README.md"));
            }
        }
    }
    files.sort();
    files
}

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_str()) {
                rust_sources(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// Words of `text` made of identifier and path characters.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || "_/.-".contains(c)))
        .map(|w| w.trim_end_matches('.'))
        .filter(|w| !w.is_empty())
}

fn is_constant(word: &str) -> bool {
    (word.starts_with("MAX_") || word.starts_with("MIN_"))
        && word.len() > 4
        && word
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn is_source_path(word: &str) -> bool {
    word.ends_with(".rs")
        && ["/src/", "/tests/", "/benches/"]
            .iter()
            .any(|d| word.contains(d))
        && !word.starts_with('/')
}

#[test]
fn docs_name_only_constants_and_files_that_exist() {
    let root = root();
    let mut constants = BTreeSet::new();
    let mut paths = BTreeSet::new();
    for doc in docs(&root) {
        let text = std::fs::read_to_string(&doc).expect("read doc");
        for word in words(&text) {
            if is_constant(word) {
                constants.insert((word.to_string(), doc.clone()));
            } else if is_source_path(word) {
                paths.insert((word.to_string(), doc.clone()));
            }
        }
    }
    assert!(
        constants.len() > 20 && paths.len() > 20,
        "the scan found too little"
    );
    let mut sources = Vec::new();
    rust_sources(&root, &mut sources);
    let code: String = sources
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect();
    let missing_constants: Vec<String> = constants
        .iter()
        .filter(|(c, _)| !code.contains(&format!("const {c}")))
        .map(|(c, doc)| format!("{c} ({})", doc.display()))
        .collect();
    let missing_paths: Vec<String> = paths
        .iter()
        .filter(|(p, _)| !root.join(p).is_file())
        .map(|(p, doc)| format!("{p} ({})", doc.display()))
        .collect();
    assert!(
        missing_constants.is_empty() && missing_paths.is_empty(),
        "docs name constants no source declares: {missing_constants:#?}\nand files that do not exist: {missing_paths:#?}"
    );
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
