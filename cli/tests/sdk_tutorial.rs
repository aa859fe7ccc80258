//! docs/sdk.md's tutorial, run as written (issue 23): the code blocks are read from the
//! document, so the tutorial cannot drift from what works. `cargo new`, the contract and its
//! test-VM test under `cargo test`, `scripts/sdk-build` to wasm32, then a deploy, calls and a
//! read on a devnet of real `keel` processes through the CLI, `keel abi` included.

use crate::common::{keel, serial, Cluster};
use std::path::Path;
use std::process::Command;

/// The fenced block of `lang` whose first line is `marker` (the file it shows).
fn block(doc: &str, lang: &str, marker: &str) -> String {
    let fence = format!("```{lang}\n{marker}\n");
    let start = doc
        .find(&fence)
        .unwrap_or_else(|| panic!("docs/sdk.md has no {marker} block"))
        + fence.len()
        - marker.len()
        - 1;
    let end = doc[start..].find("\n```").expect("closing fence") + start;
    doc[start..end].to_string() + "\n"
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn the_sdk_tutorial_runs_from_cargo_new_to_a_called_contract() {
    let _guard = serial();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let repo = repo.canonicalize().expect("repo");
    let doc = std::fs::read_to_string(repo.join("docs/sdk.md")).expect("docs/sdk.md");
    let work = tempfile::tempdir().expect("tempdir");
    let cargo = option_env!("CARGO").unwrap_or("cargo");

    // 1. cargo new, and the Cargo.toml of the tutorial (its SDK path pointed at this repo).
    run(Command::new(cargo)
        .args(["new", "--lib", "--vcs", "none", "counter"])
        .current_dir(work.path()));
    let manifest = block(&doc, "toml", "# counter/Cargo.toml")
        .replace("../keel/sdk", repo.join("sdk").to_str().expect("utf8"));
    std::fs::write(work.path().join("counter/Cargo.toml"), manifest).expect("write");
    // 2. The contract.
    let source = block(&doc, "rust", "// counter: src/lib.rs");
    std::fs::write(work.path().join("counter/src/lib.rs"), &source).expect("write");
    // 3. cargo test: the test VM runs it natively (its own target dir; nothing from a
    // registry is needed).
    let out = run(Command::new(cargo)
        .args(["test", "--offline", "--quiet"])
        .env("CARGO_TARGET_DIR", work.path().join("target"))
        .current_dir(work.path().join("counter")));
    assert!(out.contains("test result: ok. 1 passed"), "{out}");
    // 4. Build the module.
    let wasm = work.path().join("counter.wasm");
    run(Command::new(repo.join("scripts/sdk-build"))
        .arg(work.path().join("counter/src/lib.rs"))
        .arg(&wasm));

    // 5. Deploy and call on a devnet.
    let cluster = Cluster::start(4, 27_000, 300, 2, |_| {});
    let rpc = cluster.rpc(0);
    let key = cluster.dev_key(0);
    let key = key.to_str().expect("utf8");
    let me =
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(key).expect("key file"))
            .expect("json")["address"]
            .as_str()
            .expect("address")
            .to_string();
    let (ok, receipt, err) = keel(&[
        "tx",
        "deploy",
        "--rpc",
        &rpc,
        "--key",
        key,
        "--env",
        "wasm",
        "--code",
        wasm.to_str().expect("utf8"),
        "--wait",
    ]);
    assert!(
        ok && receipt["status"] == "success",
        "deploy: {receipt} {err}"
    );
    let counter = receipt["contract_address"]
        .as_str()
        .expect("address")
        .to_string();
    let (ok, bump, err) = keel(&["abi", "encode", "bump()"]);
    assert!(ok, "{err}");
    let bump = bump.as_str().expect("hex").to_string();
    for n in 1..=4u64 {
        let (ok, receipt, err) = keel(&[
            "tx", "call", "--rpc", &rpc, "--key", key, "--to", &counter, "--data", &bump, "--wait",
        ]);
        assert!(ok, "{err}");
        if n <= 3 {
            assert_eq!(receipt["status"], "success", "{receipt}");
            assert_eq!(receipt["logs"].as_array().expect("logs").len(), 1, "Bumped");
            let (ok, decoded, _) = keel(&[
                "abi",
                "decode",
                "uint256",
                receipt["output"].as_str().expect("output"),
            ]);
            assert!(ok);
            assert_eq!(decoded, serde_json::json!([n.to_string()]));
        } else {
            // TooMany(3): its selector and argument.
            assert_eq!(receipt["status"], "revert", "{receipt}");
            let (_, data, _) = keel(&["abi", "args", "uint256", "3"]);
            // The selector hashed apart from the SDK (the node's own keccak).
            let selector = hex::encode(&keel_exec_wasm::keccak256(b"TooMany(uint256)")[..4]);
            let expected = format!("0x{selector}{}", &data.as_str().expect("hex")[2..]);
            assert_eq!(receipt["output"], expected.as_str(), "{receipt}");
        }
    }
    let (ok, read, err) = keel(&["abi", "encode", "countOf(address)", &me]);
    assert!(ok, "{err}");
    let (ok, out, err) = keel(&[
        "query",
        "call",
        "--rpc",
        &rpc,
        "--to",
        &counter,
        "--data",
        read.as_str().expect("hex"),
    ]);
    assert!(ok, "{err}");
    let (ok, decoded, _) = keel(&[
        "abi",
        "decode",
        "uint256",
        out["output"].as_str().expect("output"),
    ]);
    assert!(ok);
    assert_eq!(decoded, serde_json::json!(["3"]));
    cluster.check_roots();
}
