"""Stock web3.py (from PyPI, installed by scripts/setup) against a keel devnet, unmodified.

Called by cli/tests/eth_rpc.rs with one JSON argument describing what the Rust side
deployed and sent through the keel CLI. Every check raises on failure; exit 0 means all
held. No client-side shims: a plain HTTPProvider and web3's default middleware.
"""

import json
import sys

from web3 import Web3
from web3.exceptions import ContractCustomError

ctx = json.loads(sys.argv[1])
w3 = Web3(Web3.HTTPProvider(ctx["rpc"], request_kwargs={"timeout": 30}))
checks = []


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    checks.append(name)


def addr(a):
    return Web3.to_checksum_address(a)


abi = json.load(open(ctx["token_abi"]))
holder, bob = addr(ctx["holder"]), addr(ctx["bob"])

# Chain identity.
check("connected", w3.is_connected())
check("chain id", w3.eth.chain_id == ctx["chain_id"], w3.eth.chain_id)
check("net_version", w3.net.version == str(ctx["chain_id"]), w3.net.version)
check("client version", w3.client_version.startswith("keel/"), w3.client_version)

# Blocks: by tag, number and hash agree; every tag names the finalized head.
latest = w3.eth.get_block("latest")
check("block number", w3.eth.block_number >= ctx["min_height"], w3.eth.block_number)
by_number = w3.eth.get_block(latest.number, full_transactions=True)
by_hash = w3.eth.get_block(latest.hash)
check("block by hash", by_hash.number == latest.number and by_hash.hash == latest.hash)
check("block by number", by_number.hash == latest.hash)
check("base fee", latest.baseFeePerGas == ctx["min_gas_price"], latest.baseFeePerGas)
for tag in ["safe", "finalized", "pending"]:
    check(f"tag {tag}", w3.eth.get_block(tag).number >= latest.number)
check("future block is null", w3.provider.make_request("eth_getBlockByNumber", [hex(latest.number + 10_000), False])["result"] is None)

# Accounts: balance and nonce equal keel's native view.
check("balance", w3.eth.get_balance(holder) == int(ctx["holder_balance"], 16), w3.eth.get_balance(holder))
check("nonce", w3.eth.get_transaction_count(holder) == ctx["holder_nonce"], w3.eth.get_transaction_count(holder))
check("pending nonce", w3.eth.get_transaction_count(holder, "pending") >= ctx["holder_nonce"])
check("gas price", w3.eth.gas_price == ctx["min_gas_price"], w3.eth.gas_price)
check("priority fee", w3.eth.max_priority_fee == 0)

transfer_topic = Web3.keccak(text="Transfer(address,address,uint256)")
for env in ["evm", "wasm"]:
    token = w3.eth.contract(address=addr(ctx[f"{env}_token"]), abi=abi)
    code = w3.eth.get_code(token.address)
    check(f"{env} code", len(code) > 0)
    if env == "wasm":
        check("wasm code marker", code[:3] == bytes([0xEF, 0xF0, 0x00]), code[:3].hex())
    # eth_call through the ABI, in both environments.
    check(f"{env} balanceOf", token.functions.balanceOf(bob).call() == 100)
    check(f"{env} totalSupply", token.functions.totalSupply().call() == 1_000_000)
    # Same storage layout in both environments: totalSupply is slot 2.
    slot2 = w3.eth.get_storage_at(token.address, 2)
    check(f"{env} storage slot", int.from_bytes(slot2, "big") == 1_000_000, slot2.hex())
    # Gas estimation: the estimate is enough, and in a sensible range for an ERC-20 move.
    estimate = token.functions.transfer(bob, 1).estimate_gas({"from": holder})
    check(f"{env} estimate range", 21_000 < estimate < 200_000, estimate)
    ok = token.functions.transfer(bob, 1).call({"from": holder, "gas": estimate})
    check(f"{env} estimate suffices", ok is True)
    # A revert comes back as code 3 with the custom error's data.
    try:
        token.functions.transfer(bob, 10**30).call({"from": holder})
        raise AssertionError(f"{env}: transfer of 10**30 did not revert")
    except ContractCustomError as e:
        selector = Web3.keccak(text="InsufficientBalance(uint256,uint256)")[:4].hex()
        check(f"{env} revert data", selector in str(e.data), e.data)
    raw = w3.provider.make_request(
        "eth_call",
        [{"from": holder, "to": token.address, "data": token.encode_abi("transfer", args=[bob, 10**30])}, "latest"],
    )
    check(f"{env} revert code 3", raw.get("error", {}).get("code") == 3, raw)
    # Events with filters: the Rust side moved 100 to bob once in each token.
    events = token.events.Transfer.get_logs(from_block=0, argument_filters={"to": bob})
    check(f"{env} Transfer events", len(events) == 1 and events[0].args.value == 100, events)
    check(f"{env} event from", events[0].args["from"] == holder)

# eth_getLogs filter semantics: address lists, topic positions, OR-lists, null wildcards.
both = [addr(ctx["evm_token"]), addr(ctx["wasm_token"])]
all_transfers = w3.eth.get_logs({"fromBlock": 0, "toBlock": "latest", "address": both, "topics": [transfer_topic]})
check("logs by address list", len(all_transfers) >= 2, len(all_transfers))
to_bob = w3.eth.get_logs({"fromBlock": 0, "address": both, "topics": [transfer_topic, None, "0x" + "00" * 12 + bob[2:].lower()]})
check("logs by third topic", len(to_bob) == 2, to_bob)
either = w3.eth.get_logs({"fromBlock": 0, "address": both, "topics": [[transfer_topic, Web3.keccak(text="Approval(address,address,uint256)")]]})
check("logs with OR topics", len(either) == len(all_transfers))
none = w3.eth.get_logs({"fromBlock": 0, "address": both, "topics": ["0x" + "11" * 32]})
check("logs non-matching topic", none == [])
receipt_block = w3.eth.get_logs({"blockHash": to_bob[0].blockHash, "address": to_bob[0].address})
check("logs by block hash", any(l.transactionHash == to_bob[0].transactionHash for l in receipt_block))
too_wide = w3.provider.make_request("eth_getLogs", [{"fromBlock": "0x0", "toBlock": hex(100_000)}])
err = too_wide.get("error", {})
check("log range limit", err.get("code") == -32005 and "try with this block range" in err.get("message", ""), too_wide)
suggested = err["data"]
retry = w3.provider.make_request("eth_getLogs", [{"fromBlock": suggested["from"], "toBlock": suggested["to"]}])
check("suggested range works", "result" in retry, retry)

# Transactions and receipts, native transactions in Ethereum's shapes.
tx = w3.eth.get_transaction(ctx["transfer_tx"])
check("tx from", tx["from"] == holder, tx)
check("tx to", tx.to == addr(ctx["evm_token"]), tx)
rc = w3.eth.get_transaction_receipt(ctx["transfer_tx"])
check("receipt status", rc.status == 1, rc)
check("receipt logs", rc.logs[0].topics[0] == transfer_topic, rc.logs)
check("receipt gas", 21_000 < rc.gasUsed <= rc.cumulativeGasUsed, rc)
deploy = w3.eth.get_transaction_receipt(ctx["deploy_tx"])
check("contract address", deploy.contractAddress == addr(ctx["evm_token"]), deploy)
block = w3.eth.get_block(rc.blockNumber, full_transactions=True)
check("full tx in block", any(t.hash == rc.transactionHash for t in block.transactions))
check("missing tx", w3.provider.make_request("eth_getTransactionReceipt", ["0x" + "ab" * 32])["result"] is None)

# Fee history: integer and hex block counts, reward percentiles.
fh = w3.eth.fee_history(4, "latest", [25, 75])
check("fee history", len(fh.baseFeePerGas) == len(fh.gasUsedRatio) + 1 and len(fh.reward[0]) == 2, fh)
for count in [4, "0x4"]:
    r = w3.provider.make_request("eth_feeHistory", [count, "latest", []])
    check(f"fee history count {count!r}", len(r["result"]["gasUsedRatio"]) == 4, r)

# Unknown methods: -32601.
r = w3.provider.make_request("eth_notAMethod", [])
check("unknown method", r.get("error", {}).get("code") == -32601, r)

print(json.dumps({"checks": len(checks)}))
