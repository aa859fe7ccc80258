"""Stock web3.py transacting on keel with secp256k1-signed Ethereum transactions.

Called by cli/tests/eth_rpc.rs with the devnet's prefunded Ethereum dev key (written by
`keel init` to ethereum-dev-account.json). web3.py funds a fresh account from it, then
builds (estimating gas, reading the nonce and fee data), signs locally and sends through
eth_sendRawTransaction — its standard flow, nothing patched.
"""

import json
import sys

from eth_account import Account
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError

ctx = json.loads(sys.argv[1])
w3 = Web3(Web3.HTTPProvider(ctx["rpc"], request_kwargs={"timeout": 30}))
dev = Account.from_key(ctx["eth_dev_key"])
acct = Account.from_key(Web3.keccak(text="keel web3.py test account"))
abi = json.load(open(ctx["token_abi"]))
bytecode = open(ctx["token_bin"]).read().strip()
bob = Web3.to_checksum_address(ctx["bob"])
checks = []


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    checks.append(name)


def send(tx, signer=None):
    signed = (signer or acct).sign_transaction(tx)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    check("ethereum hash", tx_hash == signed.hash, (tx_hash.hex(), signed.hash.hex()))
    return w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60, poll_latency=0.2)


def native_account(address):
    return w3.provider.make_request("keel_getAccount", [address])["result"]


# Fund a fresh account from the dev key (a plain EIP-1559 value transfer).
funded = 10**21
check("dev key funded", w3.eth.get_balance(dev.address) >= funded, w3.eth.get_balance(dev.address))
check("fresh account", w3.eth.get_balance(acct.address) == 0 and w3.eth.get_transaction_count(acct.address) == 0)
rc = send({"to": acct.address, "value": funded, "gas": 21_000, "maxFeePerGas": 2 * w3.eth.gas_price,
           "maxPriorityFeePerGas": w3.eth.max_priority_fee, "nonce": w3.eth.get_transaction_count(dev.address),
           "chainId": w3.eth.chain_id}, signer=dev)
check("funding status", rc.status == 1 and rc.gasUsed == 21_000, rc)
check("funded balance", w3.eth.get_balance(acct.address) == funded, w3.eth.get_balance(acct.address))
check("funded native view", int(native_account(acct.address.lower())["balance"], 16) == funded)

# 1. Deploy the solc-compiled token: EIP-1559 (web3.py's default), gas estimated by the node.
Token = w3.eth.contract(abi=abi, bytecode=bytecode)
deploy = Token.constructor(1_000_000).build_transaction({"from": acct.address, "nonce": 0})
check("1559 by default", "maxFeePerGas" in deploy, deploy.keys())
rc = send(deploy)
check("deploy status", rc.status == 1, rc)
check("deploy address", rc.contractAddress is not None, rc)
token = w3.eth.contract(address=rc.contractAddress, abi=abi)
check("deployed code", len(w3.eth.get_code(token.address)) > 0)
check("minted", token.functions.balanceOf(acct.address).call() == 1_000_000)
tx = w3.eth.get_transaction(rc.transactionHash)
check("tx type 2", tx.type == 2 and tx["from"] == acct.address and tx.to is None, tx)

# 2. A contract call with an event, read back with filters. web3.py's default fees (tip from
# eth_maxPriorityFeePerGas = 0, cap 2·base + tip) pay exactly the base fee per gas.
estimate = token.functions.transfer(bob, 250).estimate_gas({"from": acct.address})
base = w3.eth.get_block("latest").baseFeePerGas
before = w3.eth.get_balance(acct.address)
call = token.functions.transfer(bob, 250).build_transaction({"from": acct.address, "nonce": 1, "gas": estimate})
check("default cap above the base fee", call["maxFeePerGas"] >= 2 * base, call)
rc = send(call)
check("transfer status", rc.status == 1 and rc.gasUsed <= estimate, (rc, estimate))
check("effective price is the base fee", rc.effectiveGasPrice == base, (rc.effectiveGasPrice, base))
check("paid gasUsed x effectiveGasPrice", before - w3.eth.get_balance(acct.address) == rc.gasUsed * rc.effectiveGasPrice,
      (before, w3.eth.get_balance(acct.address), rc.gasUsed, rc.effectiveGasPrice))
check("tx gasPrice is the effective price", w3.eth.get_transaction(rc.transactionHash).gasPrice == base)
receipts = w3.eth.get_block_receipts(rc.blockNumber)
check("block receipts", [r.transactionHash for r in receipts].count(rc.transactionHash) == 1
      and all(r.blockNumber == rc.blockNumber for r in receipts)
      and next(r for r in receipts if r.transactionHash == rc.transactionHash) == rc, receipts)
check("block receipts by hash", w3.eth.get_block_receipts(rc.blockHash) == receipts)
events = token.events.Transfer().process_receipt(rc)
check("event in receipt", len(events) == 1 and events[0].args.value == 250 and events[0].args.to == bob, events)
logs = token.events.Transfer.get_logs(from_block=rc.blockNumber, argument_filters={"from": acct.address})
check("event by filter", [l.transactionHash for l in logs] == [rc.transactionHash], logs)
check("balance moved", token.functions.balanceOf(bob).call() == 250)

# 3. A revert reason before sending (custom error data under code 3).
try:
    token.functions.transfer(bob, 10**30).call({"from": acct.address})
    raise AssertionError("no revert")
except ContractCustomError as e:
    check("revert data", Web3.keccak(text="InsufficientBalance(uint256,uint256)")[:4].hex() in str(e.data), e.data)

# 3b. A revert *reason* string: the solc-compiled Router reverts with "router: mode 2".
build_dir = ctx["token_abi"].rsplit("/", 1)[0]
Router = w3.eth.contract(abi=json.load(open(f"{build_dir}/Router.abi")), bytecode=open(f"{build_dir}/Router.bin").read().strip())
rc = send(Router.constructor().build_transaction({"from": acct.address, "nonce": 2}))
router = w3.eth.contract(address=rc.contractAddress, abi=Router.abi)
try:
    router.functions.relay(token.address, bob, 1, 2).call({"from": acct.address})
    raise AssertionError("relay mode 2 did not revert")
except ContractLogicError as e:
    check("revert reason", "router: mode 2" in str(e), str(e))

# 4. Legacy (EIP-155) and EIP-2930 value transfers.
price = w3.eth.gas_price
before = w3.eth.get_balance(bob)
rc = send({"to": bob, "value": 7, "gas": 21_000, "gasPrice": price, "nonce": 3, "chainId": w3.eth.chain_id})
check("legacy status", rc.status == 1 and w3.eth.get_transaction(rc.transactionHash).type == 0, rc)
rc = send({"to": bob, "value": 11, "gas": 30_000, "gasPrice": price, "nonce": 4, "chainId": w3.eth.chain_id, "accessList": []})
check("2930 status", rc.status == 1 and w3.eth.get_transaction(rc.transactionHash).type == 1, rc)
check("value arrived", w3.eth.get_balance(bob) == before + 18, w3.eth.get_balance(bob) - before)

# 5. A WASM contract through the same methods: approve on the WASM token emits Approval.
wasm = w3.eth.contract(address=Web3.to_checksum_address(ctx["wasm_token"]), abi=abi)
rc = send(wasm.functions.approve(bob, 99).build_transaction({"from": acct.address, "nonce": 5}))
check("wasm call status", rc.status == 1, rc)
approvals = wasm.events.Approval().process_receipt(rc)
check("wasm event", len(approvals) == 1 and approvals[0].args.value == 99, approvals)
check("wasm read", wasm.functions.allowance(acct.address, bob).call() == 99)
check("wasm logs filter", len(w3.eth.get_logs({"fromBlock": rc.blockNumber, "address": wasm.address, "topics": [Web3.keccak(text="Approval(address,address,uint256)")]})) == 1)

# 6. Nonces and balances shared with the native view.
check("nonce", w3.eth.get_transaction_count(acct.address) == 6, w3.eth.get_transaction_count(acct.address))
native = native_account(acct.address.lower())
check("native nonce", native["nonce"] == 6, native)
check("native balance", int(native["balance"], 16) == w3.eth.get_balance(acct.address), native)
check("fees paid", w3.eth.get_balance(acct.address) < funded - 18)

# 6b. EIP-1559 pricing: a tip is paid on top of the base fee, and the cap bounds the sum.
base = w3.eth.get_block("latest").baseFeePerGas
# (the second: the cap binds, base + tip is above it.)
for nonce, cap, tip, expected in [(6, 2 * base + 3, 3, base + 3), (7, base + 2, base + 2, base + 2)]:
    before = w3.eth.get_balance(acct.address)
    rc = send({"to": bob, "value": 1, "gas": 21_000, "maxFeePerGas": cap, "maxPriorityFeePerGas": tip,
               "nonce": nonce, "chainId": w3.eth.chain_id})
    check("tipped status", rc.status == 1, rc)
    check("effective price", rc.effectiveGasPrice == expected, (cap, tip, base, rc.effectiveGasPrice))
    check("tipped paid", before - w3.eth.get_balance(acct.address) == 1 + 21_000 * expected,
          (before, w3.eth.get_balance(acct.address)))

# 7. Refusals: replay, wrong chain id, a bad signature.
stale = acct.sign_transaction({"to": bob, "value": 1, "gas": 21_000, "gasPrice": price, "nonce": 0, "chainId": w3.eth.chain_id})
r = w3.provider.make_request("eth_sendRawTransaction", [stale.raw_transaction.to_0x_hex()])
check("stale nonce refused", "error" in r and "nonce" in r["error"]["message"], r)
wrong = acct.sign_transaction({"to": bob, "value": 1, "gas": 21_000, "gasPrice": price, "nonce": 6, "chainId": w3.eth.chain_id + 1})
r = w3.provider.make_request("eth_sendRawTransaction", [wrong.raw_transaction.to_0x_hex()])
check("wrong chain refused", r.get("error", {}).get("data", {}).get("reason") == "wrong_chain_id", r)
try:  # eth-account may refuse to sign it; if it signs, the node must refuse it.
    over = acct.sign_transaction({"to": bob, "value": 1, "gas": 21_000, "maxFeePerGas": base,
                                  "maxPriorityFeePerGas": base + 1, "nonce": 8, "chainId": w3.eth.chain_id})
except Exception:
    over = None
if over is not None:
    r = w3.provider.make_request("eth_sendRawTransaction", [over.raw_transaction.to_0x_hex()])
    check("tip above cap refused", "error" in r and "maxPriorityFeePerGas" in r["error"]["message"], r)
r = w3.provider.make_request("eth_sendRawTransaction", ["0x02deadbeef"])
check("malformed refused", r.get("error", {}).get("code") == -32602, r)

# 8. A contract written with keel-sdk (Rust, WASM): web3.py calls it, and so does a Solidity
#    contract (Router.sol relays a transfer into it), with its events and custom errors intact.
rust = w3.eth.contract(address=Web3.to_checksum_address(ctx["rust_token"]), abi=abi)
router = w3.eth.contract(address=Web3.to_checksum_address(ctx["router"]), abi=json.load(open(ctx["router_abi"])))
nonce = w3.eth.get_transaction_count(acct.address, "pending")
rc = send(rust.functions.approve(bob, 42).build_transaction({"from": acct.address, "nonce": nonce}))
check("rust call status", rc.status == 1, rc)
approvals = rust.events.Approval().process_receipt(rc)
check("rust event", len(approvals) == 1 and approvals[0].args.value == 42, approvals)
check("rust read", rust.functions.allowance(acct.address, bob).call() == 42)
check("router holds rust tokens", rust.functions.balanceOf(router.address).call() == ctx["router_rust_balance"])
before = rust.functions.balanceOf(bob).call()
rc = send(router.functions.relay(rust.address, bob, 5, 1).build_transaction({"from": acct.address, "nonce": nonce + 1}))
check("solidity to rust status", rc.status == 1, rc)
check("solidity moved rust tokens", rust.functions.balanceOf(bob).call() == before + 5)
moved = rust.events.Transfer().process_receipt(rc)
check("rust Transfer log under the solidity call", len(moved) == 1 and moved[0].args["from"] == router.address, moved)
relayed = router.events.Relayed().process_receipt(rc)
check("router saw success", len(relayed) == 1 and relayed[0].args.ok == 1, relayed)
try:
    router.functions.relay(rust.address, bob, 10**9, 0).call({"from": acct.address})
    raise AssertionError("no revert")
except ContractCustomError as e:
    check("rust custom error bubbled through solidity",
          Web3.keccak(text="InsufficientBalance(uint256,uint256)")[:4].hex() in str(e.data), e.data)

print(json.dumps({"checks": len(checks), "address": acct.address}))
