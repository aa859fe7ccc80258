//! A validator's key rotated with `keel tx validator update --new-key` on a running
//! 4-validator devnet: at the next boundary the set holds the new key at the old one's index
//! with its power and the old key is gone from the set and the registry; the node, still on
//! the old key, signs nothing more while the other three keep the chain live; restarted by
//! its operator with the new key (its vote log kept) it proposes and votes under it. Every
//! validator on the same roots, no equivocation.

use crate::common::{keel, serial, Cluster};
use crate::validators::{
    created_public_key, power_of, query_validators, registry_entry, send, wait_for,
};
use std::time::{Duration, Instant};

#[test]
fn a_validator_rotates_its_key_and_votes_under_the_new_one() {
    let _guard = serial();
    let mut cluster = Cluster::start_with_epochs(4, 29_000, 150, 1, 10, |_| {});
    let rpc = cluster.rpc(0);
    cluster.wait_height(&[0, 1, 2, 3], 5, Duration::from_secs(60));
    let home3 = cluster.home(3);
    let operator3 = home3.join("keys/operator.json");
    let key_file = home3.join("keys/validator.json");
    let old_key = created_public_key(key_file.to_str().expect("utf8"));
    let start = query_validators(&rpc);
    let members = |out: &serde_json::Value| {
        out["set"]["members"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|m| m["public_key"].as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let index = members(&start)
        .iter()
        .position(|k| *k == old_key)
        .expect("validator 3 in the set");
    let power = power_of(&start["set"], &old_key).expect("power");

    let new_file = cluster.dir.path().join("rotated.json");
    let new_path = new_file.to_str().expect("utf8");
    let (ok, created, err) = keel(&["keys", "new", "--out", new_path]);
    assert!(ok, "{err}");
    let new_key = created["public_key"].as_str().expect("key").to_string();
    let updated = send(&[
        "tx",
        "validator",
        "update",
        "--rpc",
        &rpc,
        "--key",
        operator3.to_str().expect("utf8"),
        "--validator",
        &old_key,
        "--new-key",
        new_path,
        "--wait",
    ]);
    assert_eq!(updated["status"], "success", "{updated}");
    // Announced (or, if a boundary already passed, done).
    let now = query_validators(&rpc);
    let announced = registry_entry(&now, &old_key).is_some_and(|r| r["next_key"] == new_key);
    assert!(
        announced || registry_entry(&now, &new_key).is_some(),
        "{now}"
    );

    // At the boundary: the new key at the same index with the same power; the old key gone.
    let rotated = wait_for(&cluster, "the set never took the new key", |out| {
        power_of(&out["set"], &new_key).is_some()
    });
    assert_eq!(members(&rotated).get(index), Some(&new_key), "{rotated}");
    assert_eq!(power_of(&rotated["set"], &new_key), Some(power));
    assert_eq!(power_of(&rotated["set"], &old_key), None);
    assert!(registry_entry(&rotated, &old_key).is_none(), "{rotated}");
    assert_eq!(
        registry_entry(&rotated, &new_key).expect("the moved record")["status"],
        "active"
    );
    // The node still runs the old key, outside the set: the other three go on.
    let height = cluster.height(0).expect("height");
    cluster.wait_height(&[0, 1, 2], height + 10, Duration::from_secs(60));

    // Its operator restarts it with the new key; it proposes a finalized block under it.
    cluster.kill9(3);
    std::fs::copy(&new_file, &key_file).expect("install the new key");
    cluster.spawn(3);
    let deadline = Instant::now() + Duration::from_secs(90);
    let proposed = loop {
        let tip = cluster.height(0).unwrap_or(0);
        let proposed = (tip.saturating_sub(20)..=tip).any(|h| {
            cluster
                .call(0, "keel_getBlock", vec![h.into()])
                .is_ok_and(|b| b["proposer"] == new_key.as_str())
        });
        if proposed {
            break tip;
        }
        if Instant::now() > deadline {
            cluster.dump_logs();
            panic!("the rotated validator never proposed a finalized block");
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    cluster.wait_height(&[0, 1, 2, 3], proposed + 3, Duration::from_secs(60));
    assert!(cluster.check_roots() > 0);
    let equivocations = cluster.equivocations();
    assert!(equivocations.is_empty(), "{equivocations:?}");
}
