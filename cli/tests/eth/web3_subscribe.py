"""Stock web3.py subscriptions over keel's WebSocket endpoint (the RPC port): newHeads,
logs filtered by a contract's address and event, and newPendingTransactions, while the
script deploys a token and transfers it with the devnet's Ethereum dev key.

Called by cli/tests/eth_rpc.rs after web3_write.py.
"""

import asyncio
import json
import sys

from eth_account import Account
from web3 import AsyncWeb3, Web3, WebSocketProvider

ctx = json.loads(sys.argv[1])
checks = []
TRANSFER = Web3.keccak(text="Transfer(address,address,uint256)")


def hx(value):
    """A hash, address or data as lowercase 0x-hex, whether web3.py formatted it or not."""
    return (Web3.to_hex(value) if isinstance(value, (bytes, bytearray)) else str(value)).lower()


def num(value):
    return value if isinstance(value, int) else int(value, 16)


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    checks.append(name)


async def main():
    url = ctx["rpc"].replace("http://", "ws://", 1)
    dev = Account.from_key(ctx["eth_dev_key"])
    abi = json.load(open(ctx["token_abi"]))
    bytecode = open(ctx["token_bin"]).read().strip()
    bob = Web3.to_checksum_address(ctx["bob"])
    async with AsyncWeb3(WebSocketProvider(url)) as w3:
        chain_id = await w3.eth.chain_id

        async def send(tx):
            signed = dev.sign_transaction(tx)
            await w3.eth.send_raw_transaction(signed.raw_transaction)
            return signed.hash, await w3.eth.wait_for_transaction_receipt(signed.hash, timeout=60, poll_latency=0.2)

        nonce = await w3.eth.get_transaction_count(dev.address, "pending")
        Token = w3.eth.contract(abi=abi, bytecode=bytecode)
        deploy = await Token.constructor(1_000_000).build_transaction({"from": dev.address, "nonce": nonce, "chainId": chain_id})
        _, rc = await send(deploy)
        check("deploy", rc.status == 1 and rc.contractAddress is not None, rc)
        token = w3.eth.contract(address=rc.contractAddress, abi=abi)

        heads = await w3.eth.subscribe("newHeads")
        logs = await w3.eth.subscribe("logs", {"address": token.address, "topics": [TRANSFER]})
        pending = await w3.eth.subscribe("newPendingTransactions")
        check("three subscriptions", len({heads, logs, pending}) == 3, (heads, logs, pending))

        transfer = await token.functions.transfer(bob, 321).build_transaction(
            {"from": dev.address, "nonce": nonce + 1, "chainId": chain_id})
        signed = dev.sign_transaction(transfer)
        sent = await w3.eth.send_raw_transaction(signed.raw_transaction)

        seen = {"head": None, "log": None, "pending": False}

        async def collect():
            async for message in w3.socket.process_subscriptions():
                sub, result = message["subscription"], message["result"]
                if sub == heads and seen["head"] is None:
                    seen["head"] = result
                elif sub == logs and hx(result["transactionHash"]) == hx(sent):
                    seen["log"] = result
                elif sub == pending and hx(result) == hx(sent):
                    seen["pending"] = True
                if seen["head"] is not None and seen["log"] is not None and seen["pending"]:
                    return

        await asyncio.wait_for(collect(), timeout=60)
        head = seen["head"]
        check("head number", num(head["number"]) >= rc.blockNumber, head)
        check("head base fee", num(head["baseFeePerGas"]) == await w3.eth.gas_price, head)
        check("head without transactions", "transactions" not in head, head.keys())
        log = seen["log"]
        check("log address", hx(log["address"]) == hx(token.address), log)
        check("log topics", hx(log["topics"][0]) == hx(TRANSFER) and len(log["topics"]) == 3, log)
        check("log value", int(hx(log["data"]), 16) == 321, log)
        check("log not removed", log["removed"] is False, log)
        receipt = await w3.eth.wait_for_transaction_receipt(sent, timeout=60, poll_latency=0.2)
        check("log in the receipt's block", num(log["blockNumber"]) == receipt.blockNumber
              and num(log["logIndex"]) == receipt.logs[0].logIndex, (log, receipt))
        check("pending hash seen", seen["pending"])
        for sub in (heads, logs, pending):
            check("unsubscribe", await w3.eth.unsubscribe(sub) is True, sub)


asyncio.run(main())
print(json.dumps({"checks": len(checks)}))
