//! `eth_getLogs` (filters, range and result limits) and Ethereum log blooms.

use super::*;

/// The 2048-bit Ethereum bloom of logs (yellow paper §4.3.1: three 11-bit indices per item).
pub(super) fn logs_bloom<'a>(logs: impl IntoIterator<Item = &'a Log>) -> [u8; 256] {
    let mut bloom = [0u8; 256];
    let mut add = |item: &[u8]| {
        let h = eth::keccak256(item);
        for i in 0..3 {
            let bit = (usize::from(h[2 * i]) << 8 | usize::from(h[2 * i + 1])) & 2047;
            bloom[255 - bit / 8] |= 1 << (bit % 8);
        }
    };
    for log in logs {
        add(&log.address.0);
        for topic in &log.topics {
            add(topic);
        }
    }
    bloom
}

impl RpcContext {
    pub(super) fn eth_get_logs(&self, p: &[Value]) -> Result<Value, ErrorObjectOwned> {
        let filter = p
            .first()
            .and_then(Value::as_object)
            .ok_or_else(|| bad_params("eth_getLogs takes one filter object"))?;
        let filter = LogFilter::parse(filter)?;
        let (from, to) = match &filter.block_hash {
            Some(hash) => {
                let h = self
                    .store
                    .block_height(hash)
                    .map_err(node_err)?
                    .ok_or_else(|| err(NODE_ERROR, format!("block {} not found", hash.to_hex())))?;
                (h, h)
            }
            None => (
                self.requested_height(filter.from_block.as_ref())?,
                self.requested_height(filter.to_block.as_ref())?,
            ),
        };
        // The limit applies to the range asked for; then the range is cut at the latest
        // block (as geth does), so "toBlock: latest" and a number past it behave alike.
        let last_allowed = from.saturating_add(MAX_LOG_BLOCK_RANGE - 1);
        if to > last_allowed {
            return Err(ErrorObjectOwned::owned(
                LIMIT_EXCEEDED,
                format!(
                    "block range {from:#x}..{to:#x} spans {} blocks, more than the limit of {MAX_LOG_BLOCK_RANGE}; try with this block range [{from:#x}, {last_allowed:#x}]",
                    // Saturating: `to` may be any u64 a client sends (found by fuzzing).
                    to.saturating_sub(from).saturating_add(1)
                ),
                Some(json!({ "from": qty(from), "to": qty(last_allowed) })),
            ));
        }
        let to = to.min(self.latest_height());
        if from > to {
            return Ok(json!([]));
        }
        let oldest = self.store.oldest_retained().map_err(node_err)?;
        let mut out = Vec::new();
        for height in from.max(oldest)..=to {
            let Some((block, receipts)) = self.block_of(height)? else {
                continue;
            };
            let mut log_index = 0usize;
            for (i, r) in receipts.iter().enumerate() {
                for log in &r.logs {
                    if filter.matches(log) {
                        if out.len() == MAX_LOGS_PER_QUERY {
                            let end = height.saturating_sub(1).max(from);
                            return Err(ErrorObjectOwned::owned(
                                LIMIT_EXCEEDED,
                                format!("query returns more than {MAX_LOGS_PER_QUERY} logs; try with this block range [{from:#x}, {end:#x}]"),
                                Some(json!({ "from": qty(from), "to": qty(end) })),
                            ));
                        }
                        let tx_hash = block.transactions.get(i).map_or(r.tx_hash, |t| t.hash());
                        out.push(log_json(log, &block, tx_hash, i, log_index));
                    }
                    log_index += 1;
                }
            }
        }
        Ok(Value::Array(out))
    }
}

pub(super) fn log_json(
    log: &Log,
    block: &Block,
    tx_hash: Hash,
    tx_index: usize,
    log_index: usize,
) -> Value {
    json!({
        "address": log.address.to_hex(),
        "topics": log.topics.iter().map(|t| hexb(t)).collect::<Vec<_>>(),
        "data": hexb(&log.data),
        "blockNumber": qty(block.header.height),
        "blockHash": block.hash().to_hex(),
        "transactionHash": tx_hash.to_hex(),
        "transactionIndex": qty(tx_index as u64),
        "logIndex": qty(log_index as u64),
        "removed": false,
    })
}

/// An `eth_getLogs` filter: addresses (any of), topics per position (null = any, a list =
/// any of), and a block range or one block hash.
pub(super) struct LogFilter {
    addresses: Vec<Address>,
    topics: Vec<Option<Vec<[u8; 32]>>>,
    from_block: Option<Value>,
    to_block: Option<Value>,
    block_hash: Option<Hash>,
}

/// Topic positions a log can have (LOG0..LOG4).
const MAX_TOPIC_POSITIONS: usize = 4;
/// Addresses, and alternatives per topic position, one filter may list (each log is checked
/// against them, for every query and every block a subscription sees).
pub const MAX_FILTER_ALTERNATIVES: usize = 1_000;

fn parse_topic(v: &Value) -> Result<[u8; 32], ErrorObjectOwned> {
    let s = v
        .as_str()
        .ok_or_else(|| bad_params("topic: a 32-byte hex string"))?;
    Ok(parse_hash(s)?.0)
}

impl LogFilter {
    pub(super) fn parse(o: &serde_json::Map<String, Value>) -> Result<LogFilter, ErrorObjectOwned> {
        let addresses = match o.get("address") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![parse_address(s)?],
            Some(Value::Array(a)) if a.len() <= MAX_FILTER_ALTERNATIVES => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| bad_params("address: hex string"))
                        .and_then(parse_address)
                })
                .collect::<Result<_, _>>()?,
            Some(Value::Array(_)) => {
                return Err(bad_params(format!(
                    "address: at most {MAX_FILTER_ALTERNATIVES} addresses"
                )))
            }
            Some(_) => return Err(bad_params("address: a hex address or a list of them")),
        };
        let topics = match o.get("topics") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) if a.len() <= MAX_TOPIC_POSITIONS => a
                .iter()
                .map(|t| match t {
                    Value::Null => Ok(None),
                    Value::Array(any) if any.len() <= MAX_FILTER_ALTERNATIVES => any
                        .iter()
                        .map(parse_topic)
                        .collect::<Result<_, _>>()
                        .map(Some),
                    Value::Array(_) => Err(bad_params(format!(
                        "topics: at most {MAX_FILTER_ALTERNATIVES} alternatives per position"
                    ))),
                    one => parse_topic(one).map(|t| Some(vec![t])),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad_params("topics: a list of at most 4 positions")),
        };
        let block_hash = match o.get("blockHash") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(parse_hash(s)?),
            Some(_) => return Err(bad_params("blockHash: a 32-byte hex string")),
        };
        let from_block = o.get("fromBlock").cloned();
        let to_block = o.get("toBlock").cloned();
        if block_hash.is_some() && (from_block.is_some() || to_block.is_some()) {
            return Err(ErrorObjectOwned::owned(
                INVALID_PARAMS,
                "use either blockHash or fromBlock/toBlock",
                None::<()>,
            ));
        }
        Ok(LogFilter {
            addresses,
            topics,
            from_block,
            to_block,
            block_hash,
        })
    }

    /// No block range or hash (a `null` bound is none): what a subscription takes.
    pub(super) fn is_live(&self) -> bool {
        matches!(self.from_block, None | Some(Value::Null))
            && matches!(self.to_block, None | Some(Value::Null))
            && self.block_hash.is_none()
    }

    pub(super) fn matches(&self, log: &Log) -> bool {
        if !self.addresses.is_empty() && !self.addresses.contains(&log.address) {
            return false;
        }
        self.topics.iter().enumerate().all(|(i, want)| match want {
            None => true,
            Some(any) => log.topics.get(i).is_some_and(|t| any.contains(t)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_exec_evm::revm::primitives::{self as p, alloy_primitives::Bloom};

    #[test]
    fn logs_bloom_matches_alloys() {
        let logs = vec![
            Log {
                address: Address([7; 20]),
                topics: vec![[1; 32], [2; 32]],
                data: vec![1, 2, 3],
            },
            Log {
                address: Address([9; 20]),
                topics: vec![],
                data: vec![],
            },
        ];
        let mut expected = Bloom::default();
        for log in &logs {
            let topics = log.topics.iter().map(|t| p::B256::from(*t)).collect();
            expected.accrue_log(&p::Log::new_unchecked(
                p::Address::from(log.address.0),
                topics,
                p::Bytes::from(log.data.clone()),
            ));
        }
        assert_eq!(logs_bloom(&logs), expected.0 .0);
    }
}
