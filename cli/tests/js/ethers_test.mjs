// Stock ethers v6 against a keel devnet (cli/tests/eth_rpc.rs), nothing patched: a value
// transfer with ethers' default EIP-1559 fees pays exactly gasUsed × effectiveGasPrice, at
// the base fee; a deploy; a `Transfer` event through `contract.on` over the WebSocket
// endpoint (eth_subscribe logs) and blocks through `provider.on("block")` (newHeads);
// custom-error and reason-string revert decoding; and a debug_traceTransaction call trace
// of an EVM contract calling a WASM token.
//
// Usage: node ethers_test.mjs '<context json>'; prints {"checks": n} when all pass.
import fs from "node:fs";
import { check, passed, sleep, withTimeout } from "./checks.mjs";
import { ethers } from "ethers";

const ctx = JSON.parse(process.argv[2]);

// No response cache: ethers reuses an identical request's answer for 250 ms by default, and a
// balance read right after a fast block would see the balance from before it.
const provider = new ethers.JsonRpcProvider(ctx.rpc, undefined, { staticNetwork: true, polling: true, cacheTimeout: -1 });
provider.pollingInterval = 200;
const dev = new ethers.Wallet(ctx.eth_dev_key, provider);
const acct = ethers.Wallet.createRandom(provider);
const abi = JSON.parse(fs.readFileSync(ctx.token_abi, "utf8"));
const bytecode = "0x" + fs.readFileSync(ctx.token_bin, "utf8").trim();
const buildDir = ctx.token_abi.slice(0, ctx.token_abi.lastIndexOf("/"));
const routerAbi = JSON.parse(fs.readFileSync(`${buildDir}/Router.abi`, "utf8"));
const routerBin = "0x" + fs.readFileSync(`${buildDir}/Router.bin`, "utf8").trim();
const bob = ethers.getAddress(ctx.bob);

check("chain id", (await provider.getNetwork()).chainId === BigInt(ctx.chain_id));

// 1. A value transfer with ethers' default fees: tip from eth_maxPriorityFeePerGas (0), cap
// 2·base + tip. It pays the base fee, exactly gasUsed × effectiveGasPrice.
const fees = await provider.getFeeData();
check("default tip is zero", fees.maxPriorityFeePerGas === 0n, fees);
const funded = 10n ** 20n;
const devBefore = await provider.getBalance(dev.address);
const sent = await dev.sendTransaction({ to: acct.address, value: funded });
check("1559 by default", sent.type === 2 && sent.maxPriorityFeePerGas === 0n, sent);
let rc = await sent.wait();
let block = await provider.getBlock(rc.blockNumber);
check("transfer status", rc.status === 1 && rc.gasUsed === 21000n, rc);
check("effective price is the base fee", rc.gasPrice === block.baseFeePerGas, [rc.gasPrice, block.baseFeePerGas]);
check("paid gasUsed x effectiveGasPrice",
  devBefore - (await provider.getBalance(dev.address)) === funded + rc.gasUsed * rc.gasPrice);
check("funded", (await provider.getBalance(acct.address)) === funded);

// 2. Deploy the solc-compiled token.
const token = await new ethers.ContractFactory(abi, bytecode, acct).deploy(1_000_000n);
await token.waitForDeployment();
const tokenAddress = await token.getAddress();
check("deployed code", (await provider.getCode(tokenAddress)).length > 2);
check("minted", (await token.balanceOf(acct.address)) === 1_000_000n);

// 3. Events and blocks over the WebSocket endpoint (eth_subscribe).
const ws = new ethers.WebSocketProvider(ctx.rpc.replace("http://", "ws://"), undefined, { staticNetwork: true });
const wsToken = new ethers.Contract(tokenAddress, abi, ws);
const blocks = [];
await ws.on("block", (n) => blocks.push(n));
const event = new Promise((resolve) => wsToken.on("Transfer", (from, to, value, payload) => resolve({ from, to, value, payload })));
await sleep(1000); // the subscriptions are requested asynchronously
const transfer = await token.transfer(bob, 250n);
rc = await transfer.wait();
const seen = await withTimeout(event, 30000, "Transfer event");
check("event args", seen.from === acct.address && seen.to === bob && seen.value === 250n, seen);
check("event tx", seen.payload.log.transactionHash === transfer.hash, seen.payload.log);
block = await provider.getBlock(rc.blockNumber);
check("call paid gasUsed x effectiveGasPrice", rc.gasPrice === block.baseFeePerGas && rc.fee === rc.gasUsed * rc.gasPrice, rc);
await withTimeout((async () => { while (!blocks.some((n) => n >= rc.blockNumber)) await sleep(100); })(), 30000, "newHeads");
check("blocks over ws", blocks.length > 0);

// 4. Revert decoding: the token's custom error, and a reason string from the Router.
try {
  await token.transfer.staticCall(bob, 10n ** 30n);
  check("custom error reverts", false);
} catch (e) {
  check("custom error decoded", e.code === "CALL_EXCEPTION" && e.revert?.name === "InsufficientBalance", e.shortMessage);
}
const router = await new ethers.ContractFactory(routerAbi, routerBin, acct).deploy();
await router.waitForDeployment();
const routerAddress = await router.getAddress();
try {
  await router.relay.staticCall(tokenAddress, bob, 1n, 2n);
  check("reason reverts", false);
} catch (e) {
  check("reason decoded", e.code === "CALL_EXCEPTION" && e.reason === "router: mode 2", e.shortMessage);
}
try { // sending it: ethers' gas estimate reports the same revert
  await router.relay(tokenAddress, bob, 1n, 2n);
  check("estimate reverts", false);
} catch (e) {
  check("estimate revert decoded", e.code === "CALL_EXCEPTION" && e.reason === "router: mode 2", e.shortMessage);
}

// 5. A call trace across environments: the EVM router relays to the WASM token, where it
// holds nothing, so the inner transfer reverts and the relay records it (mode 1).
const relay = await router.relay(ctx.wasm_token, bob, 1n, 1n);
rc = await relay.wait();
check("relay status", rc.status === 1, rc);
const trace = await provider.send("debug_traceTransaction", [relay.hash, { tracer: "callTracer" }]);
check("trace top", trace.type === "CALL" && trace.from === acct.address.toLowerCase()
  && trace.to === routerAddress.toLowerCase() && trace.environment === "evm" && !trace.error, trace);
check("trace gas", BigInt(trace.gasUsed) === rc.gasUsed && BigInt(trace.gas) === relay.gasLimit, [trace.gas, trace.gasUsed]);
check("trace input", trace.input === relay.data, trace.input);
const inner = trace.calls?.[0];
check("trace inner frame", trace.calls.length === 1 && inner.type === "CALL" && inner.environment === "wasm"
  && inner.from === routerAddress.toLowerCase() && inner.to === ctx.wasm_token.toLowerCase(), trace.calls);
check("trace inner revert", inner.error === "execution reverted"
  && token.interface.parseError(inner.output)?.name === "InsufficientBalance", inner);
check("trace inner input", token.interface.parseTransaction({ data: inner.input })?.name === "transfer", inner.input);
const top = await provider.send("debug_traceTransaction", [relay.hash, { tracer: "callTracer", tracerConfig: { onlyTopCall: true } }]);
check("trace onlyTopCall", top.calls === undefined && top.gasUsed === trace.gasUsed, top);
try {
  await provider.send("debug_traceTransaction", [relay.hash, {}]);
  check("opcode logger refused", false);
} catch (e) {
  check("opcode logger refused", e.error?.code === -32602, e.error);
}

ws.destroy();
provider.destroy();
console.log(JSON.stringify({ checks: passed(), address: acct.address }));
// Listeners of the closed providers can keep timers alive: the result is printed, so leave.
process.exit(0);
