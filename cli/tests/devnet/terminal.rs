//! `keel devnet` as a person runs it, at a terminal (a pseudo-terminal from util-linux's
//! `script`): an anvil-style banner with every validator's endpoints and the prefunded
//! accounts and keys, then a status line rewritten in place whose height grows; SIGTERM
//! stops it and its validators. Scripts, whose stdout is no terminal, keep getting JSON
//! lines (every other devnet test reads them).

use crate::common::{serial, KEEL};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BASE_PORT: u16 = 28_400;
const DEADLINE: Duration = Duration::from_secs(90);

/// Heights shown by the status lines in `text`, in order.
fn status_heights(text: &str) -> Vec<u64> {
    text.split('\r')
        .filter_map(|part| part.split("height ").nth(1))
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .collect()
}

/// `text` as a literal in pgrep's extended regular expressions.
fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()[]{}|^$".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

#[test]
fn on_a_terminal_keel_devnet_prints_a_banner_and_a_live_status_line() {
    let _guard = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("net");
    let command = format!(
        "{KEEL} devnet --home {} --validators 4 --base-port {BASE_PORT} --block-time-ms 200",
        home.display()
    );
    let mut script = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("script (util-linux) runs keel devnet in a pseudo-terminal");
    let mut stdout = script.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
            let text = String::from_utf8_lossy(&seen);
            let heights = status_heights(&text);
            if heights.len() >= 3 && heights.last() > heights.first() {
                break;
            }
        }
        String::from_utf8_lossy(&seen).to_string()
    });
    let text = reader.join().expect("reader");
    // Stop the devnet as `kill` would: one SIGTERM to `keel devnet` itself, not to `script`
    // (whose command line holds the same words: killing it hung up the terminal, which
    // stopped everything even while `keel devnet` waited for a second signal).
    let _ = Command::new("pkill")
        .args([
            "-TERM",
            "-f",
            &format!(
                "^{} devnet --home {}",
                regex_escape(KEEL),
                regex_escape(&home.display().to_string())
            ),
        ])
        .status();
    let stopped = Instant::now();
    while script.try_wait().expect("wait").is_none() {
        assert!(
            stopped.elapsed() < Duration::from_secs(30),
            "keel devnet did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = Command::new("pgrep")
        .args(["-f", &home.display().to_string()])
        .output()
        .expect("pgrep");
    assert!(left.stdout.is_empty(), "validators left running: {left:?}");

    assert!(
        !text.contains("\"ready\""),
        "JSON lines on a terminal:\n{text}"
    );
    for i in 0..4u16 {
        let rpc = format!("http://127.0.0.1:{}", BASE_PORT + 100 + i);
        assert!(text.contains(&rpc), "no {rpc} in the banner:\n{text}");
    }
    assert!(
        text.contains(&format!("ws://127.0.0.1:{}", BASE_PORT + 100)),
        "{text}"
    );
    let accounts: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(home.join("accounts.json")).expect("accounts.json"),
    )
    .expect("json");
    let first = accounts[0]["address"].as_str().expect("address");
    let key: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(accounts[0]["key_file"].as_str().expect("key file"))
            .expect("key file"),
    )
    .expect("json");
    assert!(text.contains(first), "{text}");
    assert!(
        text.contains(key["secret_seed"].as_str().expect("seed")),
        "{text}"
    );
    assert!(text.contains(keel_cli::init::ETH_DEV_ADDRESS), "{text}");
    let heights = status_heights(&text);
    assert!(
        heights.len() >= 3 && heights.last() > heights.first(),
        "no growing status line: {heights:?}\n{text}"
    );
    assert!(text.contains("validators 4/4"), "{text}");
}
