//! A plugin's context carries the account's live jurisdiction tags (issue 20 item 4: "…,
//! spent-so-far, jurisdiction tags"): plugins that answer with a word of their input show
//! the tags array as the ABI lays it out, ascending, live ones only.

use super::jurisdiction::{call_with, chain_with_attester, tag_data, J};
use super::{denial, run_change, set_policy, transfer};
use crate::common::{addr, key, Chain};
use keel_types::policy::{AccountPolicy, PolicyRule};
use keel_types::{Address, Env, SecretKey, TxStatus, U256};

/// Input offsets: the selector, 11 static words, the tags' offset word, then the tags.
const TAGS_OFFSET_AT: usize = 4 + 11 * 32;
const TAGS_COUNT_AT: usize = 4 + 12 * 32;
const FIRST_TAG_AT: usize = TAGS_COUNT_AT + 32;

/// A plugin whose code is the input's word at `at` (0 allows; anything else denies with
/// that code as the denial's `used`).
fn echo_plugin(chain: &mut Chain, owner: &SecretKey, at: usize) -> Address {
    let wasm = wat::parse_str(format!(
        r#"(module
             (import "keel" "read_input" (func $in (param i32)))
             (import "keel" "return_data" (func $ret (param i32 i32)))
             (memory (export "memory") 1 1)
             (func (export "call") (param i32) (result i32)
               (call $in (i32.const 0))
               (call $ret (i32.const {at}) (i32.const 32))
               (i32.const 0)))"#
    ))
    .expect("wat");
    chain.deploy(owner, Env::Wasm, wasm, Vec::new())
}

fn attach(chain: &mut Chain, agent: &SecretKey, plugin: Address) {
    let policy = AccountPolicy {
        plugins: vec![plugin],
        ..AccountPolicy::default()
    };
    let r = run_change(chain, agent, set_policy(addr(agent), policy));
    assert_eq!(r.status, TxStatus::Success, "{r:?}");
}

/// The code a transfer of `agent`'s got from its plugin (0: allowed).
fn code_seen(chain: &mut Chain, agent: &SecretKey) -> U256 {
    let r = chain.run(agent, 300_000, transfer(Address([4; 20]), 1));
    match denial(&r) {
        None => {
            assert_eq!(r.status, TxStatus::Success, "{r:?}");
            U256::ZERO
        }
        Some(d) => {
            assert_eq!(d.rule, PolicyRule::PluginDenied, "{r:?}");
            d.used
        }
    }
}

fn left_aligned(code: &str) -> U256 {
    let mut w = [0u8; 32];
    w[..2].copy_from_slice(code.as_bytes());
    U256::from_be_bytes(w)
}

#[test]
fn a_plugin_reads_the_accounts_live_jurisdiction_tags() {
    // One agent per plugin: an agent may only tighten its own policy, and swapping plugins
    // is not tightening.
    let (attester, a_offset, a_count, a_first) = (key(1), key(2), key(3), key(4));
    let mut chain = chain_with_attester(&[&attester, &a_offset, &a_count, &a_first], &attester);
    let offset = echo_plugin(&mut chain, &attester, TAGS_OFFSET_AT);
    let count = echo_plugin(&mut chain, &attester, TAGS_COUNT_AT);
    let first = echo_plugin(&mut chain, &attester, FIRST_TAG_AT);
    attach(&mut chain, &a_offset, offset);
    attach(&mut chain, &a_count, count);
    attach(&mut chain, &a_first, first);
    // The dynamic array's offset is the head's length, whatever the tags.
    assert_eq!(code_seen(&mut chain, &a_offset), U256::from(12u64 * 32));
    // Untagged: an empty array (the plugins allow).
    assert_eq!(code_seen(&mut chain, &a_count), U256::ZERO);
    assert_eq!(code_seen(&mut chain, &a_first), U256::ZERO);
    let tag = |chain: &mut Chain, agent: &SecretKey, code: &str, expires_at: u64| {
        let data = tag_data(&addr(agent), code, expires_at);
        let r = call_with(chain, &attester, J, data, 0);
        assert_eq!(r.status, TxStatus::Success, "{r:?}");
    };
    tag(&mut chain, &a_count, "US", 10_000);
    assert_eq!(code_seen(&mut chain, &a_count), U256::from(1u64));
    // A tag that has expired by the transfer's block is not in the context.
    let soon = chain.height + 2;
    tag(&mut chain, &a_count, "SG", soon);
    tag(&mut chain, &a_count, "CH", 10_000);
    assert_eq!(code_seen(&mut chain, &a_count), U256::from(2u64));
    // Ascending: CH before US, whatever order they were tagged in.
    tag(&mut chain, &a_first, "US", 10_000);
    tag(&mut chain, &a_first, "CH", 10_000);
    assert_eq!(code_seen(&mut chain, &a_first), left_aligned("CH"));
    assert_eq!(code_seen(&mut chain, &a_offset), U256::from(12u64 * 32));
}
