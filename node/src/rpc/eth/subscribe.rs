//! `eth_subscribe` over WebSocket, in Ethereum's shapes, so viem's and ethers' watchers and
//! web3.py's subscriptions work unchanged: `newHeads` (each finalized block's header),
//! `logs` (each log of each finalized block that matches an optional address / topics
//! filter, one notification per log, as geth sends them) and `newPendingTransactions` (the
//! hash of each transaction this node admits to its pool, from RPC or gossip). keel
//! finalizes every block it stores, so a log is never `removed`.

use super::logs::LogFilter;
use super::*;
use crate::rpc::next_for;
use jsonrpsee::core::SubscriptionResult;
use jsonrpsee::server::{PendingSubscriptionSink, SubscriptionMessage};
use std::sync::Arc;

/// What one subscription delivers.
enum Kind {
    NewHeads,
    Logs(Box<LogFilter>),
    NewPendingTransactions,
}

impl Kind {
    fn parse(params: &[Value]) -> Result<Kind, ErrorObjectOwned> {
        match params.first().and_then(Value::as_str) {
            Some("newHeads") => Ok(Kind::NewHeads),
            Some("newPendingTransactions") => match params.get(1) {
                None | Some(Value::Null) | Some(Value::Bool(false)) => {
                    Ok(Kind::NewPendingTransactions)
                }
                Some(_) => Err(bad_params(
                    "newPendingTransactions sends hashes only (full transactions are not offered)",
                )),
            },
            Some("logs") => {
                let filter = match params.get(1) {
                    None | Some(Value::Null) => LogFilter::parse(&serde_json::Map::new())?,
                    Some(Value::Object(o)) => LogFilter::parse(o)?,
                    Some(_) => return Err(bad_params("logs: a filter object {address, topics}")),
                };
                // A subscription sees blocks as they finalize, never a range or one block.
                if !filter.is_live() {
                    return Err(bad_params(
                        "a logs subscription takes address and topics only (no fromBlock, toBlock or blockHash)",
                    ));
                }
                Ok(Kind::Logs(Box::new(filter)))
            }
            _ => Err(bad_params(
                "unknown subscription; use \"newHeads\", \"logs\" or \"newPendingTransactions\"",
            )),
        }
    }
}

pub(super) fn register(
    module: &mut RpcModule<RpcContext>,
) -> Result<(), jsonrpsee::core::RegisterMethodError> {
    module.register_subscription(
        "eth_subscribe",
        "eth_subscription",
        "eth_unsubscribe",
        |params, pending, ctx, _| async move {
            metrics::counter!(m::RPC_REQUESTS, "method" => "eth_subscribe").increment(1);
            let kind = match params_vec(&params).and_then(|p| Kind::parse(&p)) {
                Ok(kind) => kind,
                Err(e) => {
                    pending.reject(e).await;
                    return Ok(());
                }
            };
            match kind {
                Kind::NewPendingTransactions => pending_hashes(pending, &ctx).await,
                kind => finalized(pending, &ctx, kind).await,
            }
        },
    )?;
    Ok(())
}

/// Headers or logs of every block this node finalizes from now on.
async fn finalized(
    pending: PendingSubscriptionSink,
    ctx: &Arc<RpcContext>,
    kind: Kind,
) -> SubscriptionResult {
    let mut rx = ctx.shared.subscribe();
    let sink = pending.accept().await?;
    while let Some(event) = next_for(&mut rx, &sink).await {
        let values = match &kind {
            Kind::Logs(filter) => block_logs(filter, &event.block, &event.receipts),
            // Built once per block for every subscriber.
            _ => vec![event
                .eth_head
                .get_or_init(|| {
                    ctx.eth_header_json(&event.block, &event.receipts, event.state_root)
                })
                .clone()],
        };
        for value in values {
            let message =
                SubscriptionMessage::new(sink.method_name(), sink.subscription_id(), &value)?;
            if sink.send(message).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The logs of `block` that `filter` matches, with their block-wide log index.
fn block_logs(filter: &LogFilter, block: &Block, receipts: &[Receipt]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut log_index = 0usize;
    for (i, r) in receipts.iter().enumerate() {
        for log in &r.logs {
            if filter.matches(log) {
                let tx_hash = block.transactions.get(i).map_or(r.tx_hash, |t| t.hash());
                out.push(log_json(log, block, tx_hash, i, log_index));
            }
            log_index += 1;
        }
    }
    out
}

/// The hash of every transaction this node admits from now on.
async fn pending_hashes(
    pending: PendingSubscriptionSink,
    ctx: &Arc<RpcContext>,
) -> SubscriptionResult {
    let mut rx = ctx.shared.subscribe_pending();
    let sink = pending.accept().await?;
    while let Some(hash) = next_for(&mut rx, &sink).await {
        let message =
            SubscriptionMessage::new(sink.method_name(), sink.subscription_id(), &hash.to_hex())?;
        if sink.send(message).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::eth::logs::MAX_FILTER_ALTERNATIVES;

    fn parse(params: Value) -> Result<Kind, ErrorObjectOwned> {
        Kind::parse(params.as_array().expect("an array"))
    }

    fn address(i: usize) -> String {
        format!("0x{i:040x}")
    }

    #[test]
    fn a_client_gets_what_it_named_or_a_typed_refusal() {
        assert!(matches!(parse(json!(["newHeads"])), Ok(Kind::NewHeads)));
        assert!(matches!(parse(json!(["logs"])), Ok(Kind::Logs(_))));
        assert!(matches!(
            parse(
                json!(["logs", {"address": address(1), "topics": [null, [Hash::ZERO.to_hex()]], "fromBlock": null}])
            ),
            Ok(Kind::Logs(_))
        ));
        for pending in [
            json!(["newPendingTransactions"]),
            json!(["newPendingTransactions", false]),
        ] {
            assert!(matches!(parse(pending), Ok(Kind::NewPendingTransactions)));
        }
        for refused in [
            json!([]),
            json!([7]),
            json!(["syncing"]),
            // Full transactions are not offered; a range or one block is not a live feed.
            json!(["newPendingTransactions", true]),
            json!(["logs", {"fromBlock": "0x1"}]),
            json!(["logs", {"toBlock": "latest"}]),
            json!(["logs", {"blockHash": Hash::ZERO.to_hex()}]),
            json!(["logs", {"blockHash": 5}]),
            json!(["logs", "0x01"]),
            json!(["logs", {"address": 5}]),
            json!(["logs", {"topics": [null, null, null, null, null]}]),
        ] {
            let e = parse(refused.clone())
                .err()
                .unwrap_or_else(|| panic!("{refused} accepted"));
            assert_eq!(e.code(), INVALID_PARAMS, "{refused}: {e:?}");
        }
    }

    /// Every log of every block is checked against a subscription's filter: its lists are
    /// bounded, so one client cannot make each block cost the node more than that.
    #[test]
    fn filter_lists_are_bounded() {
        let addresses = |n: usize| (0..n).map(address).collect::<Vec<_>>();
        assert!(parse(json!(["logs", {"address": addresses(MAX_FILTER_ALTERNATIVES)}])).is_ok());
        assert!(
            parse(json!(["logs", {"address": addresses(MAX_FILTER_ALTERNATIVES + 1)}])).is_err()
        );
        let topics = |n: usize| vec![Hash::ZERO.to_hex(); n];
        assert!(parse(json!(["logs", {"topics": [topics(MAX_FILTER_ALTERNATIVES)]}])).is_ok());
        assert!(parse(json!(["logs", {"topics": [topics(MAX_FILTER_ALTERNATIVES + 1)]}])).is_err());
    }

    #[test]
    fn block_logs_are_the_matching_ones_with_their_block_wide_index() {
        let log = |address: u8, topic: u8| keel_types::Log {
            address: Address([address; 20]),
            topics: vec![[topic; 32]],
            data: vec![topic],
        };
        let receipt = |logs: Vec<keel_types::Log>| Receipt {
            tx_hash: Hash::ZERO,
            status: TxStatus::Success,
            gas_used: 21_000,
            output: Vec::new(),
            logs,
            contract_address: None,
            error: None,
        };
        let block = Block {
            header: keel_types::Header {
                chain_id: 1,
                height: 5,
                epoch: 0,
                view: 5,
                parent_hash: Hash::ZERO,
                proposer: keel_types::SecretKey::from_seed([1; 32]).public_key(),
                timestamp_ms: 1,
                tx_root: Hash::ZERO,
                parent_state_root: Hash::ZERO,
                parent_receipts_root: Hash::ZERO,
                archive_root: Hash::ZERO,
            },
            transactions: Vec::new(),
        };
        let receipts = vec![
            receipt(vec![log(1, 9), log(2, 9)]),
            receipt(vec![log(1, 8), log(1, 9)]),
        ];
        let filter = match parse(
            json!(["logs", {"address": format!("0x{}", "01".repeat(20)), "topics": [format!("0x{}", "09".repeat(32))]}]),
        ) {
            Ok(Kind::Logs(f)) => f,
            _ => panic!("a logs filter"),
        };
        let found = block_logs(&filter, &block, &receipts);
        let indices: Vec<(&str, &str)> = found
            .iter()
            .map(|l| {
                (
                    l["transactionIndex"].as_str().expect("index"),
                    l["logIndex"].as_str().expect("index"),
                )
            })
            .collect();
        assert_eq!(indices, [("0x0", "0x0"), ("0x1", "0x3")]);
        assert!(found
            .iter()
            .all(|l| l["removed"] == false && l["blockNumber"] == "0x5"));
    }
}
