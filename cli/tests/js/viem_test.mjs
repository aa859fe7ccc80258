// Stock viem against a keel devnet (cli/tests/eth_rpc.rs), nothing patched: a value transfer
// and a contract call with viem's default EIP-1559 fees each pay exactly
// gasUsed × effectiveGasPrice, at the base fee; a deploy; `watchContractEvent` over the
// WebSocket transport (eth_subscribe logs) sees the event; a custom error decodes to its name
// and arguments; and a call trace reads through `client.request`.
//
// Usage: node viem_test.mjs '<context json>'; prints {"checks": n} when all pass.
import fs from "node:fs";
import { check, passed, sleep, withTimeout } from "./checks.mjs";
import {
  BaseError, ContractFunctionRevertedError, createPublicClient, createWalletClient,
  decodeFunctionData, defineChain, getAddress, http, webSocket,
} from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";

const ctx = JSON.parse(process.argv[2]);

const wsUrl = ctx.rpc.replace("http://", "ws://");
const chain = defineChain({
  id: ctx.chain_id,
  name: "keel devnet",
  nativeCurrency: { name: "keel", symbol: "KEEL", decimals: 18 },
  rpcUrls: { default: { http: [ctx.rpc], webSocket: [wsUrl] } },
});
const client = createPublicClient({ chain, transport: http(ctx.rpc), pollingInterval: 200 });
const dev = privateKeyToAccount(ctx.eth_dev_key);
const acct = privateKeyToAccount(generatePrivateKey());
const devWallet = createWalletClient({ account: dev, chain, transport: http(ctx.rpc) });
const wallet = createWalletClient({ account: acct, chain, transport: http(ctx.rpc) });
const abi = JSON.parse(fs.readFileSync(ctx.token_abi, "utf8"));
const bytecode = "0x" + fs.readFileSync(ctx.token_bin, "utf8").trim();
const bob = getAddress(ctx.bob);
const wait = (hash) => client.waitForTransactionReceipt({ hash, pollingInterval: 200, timeout: 60000 });

/** The receipt paid exactly gasUsed × effectiveGasPrice, which is the block's base fee. */
async function paidBaseFee(name, receipt, before, value) {
  const block = await client.getBlock({ blockNumber: receipt.blockNumber });
  check(`${name}: effective price is the base fee`, receipt.effectiveGasPrice === block.baseFeePerGas,
    [receipt.effectiveGasPrice, block.baseFeePerGas]);
  const after = await client.getBalance({ address: receipt.from });
  check(`${name}: paid gasUsed x effectiveGasPrice`, before - after === value + receipt.gasUsed * receipt.effectiveGasPrice,
    [before, after, receipt.gasUsed, receipt.effectiveGasPrice]);
}

check("chain id", (await client.getChainId()) === ctx.chain_id);

// 1. A value transfer with viem's default fees (tip from eth_maxPriorityFeePerGas).
const funded = 10n ** 20n;
let before = await client.getBalance({ address: dev.address });
let hash = await devWallet.sendTransaction({ to: acct.address, value: funded });
let receipt = await wait(hash);
const tx = await client.getTransaction({ hash });
check("1559 by default", tx.type === "eip1559" && tx.maxPriorityFeePerGas === 0n, tx.type);
check("transfer status", receipt.status === "success" && receipt.gasUsed === 21000n, receipt.status);
await paidBaseFee("transfer", receipt, before, funded);
check("funded", (await client.getBalance({ address: acct.address })) === funded);

// 2. Deploy the solc-compiled token.
hash = await wallet.deployContract({ abi, bytecode, args: [1_000_000n] });
receipt = await wait(hash);
const token = receipt.contractAddress;
check("deployed", receipt.status === "success" && token && (await client.getCode({ address: token })).length > 2);
check("minted", (await client.readContract({ address: token, abi, functionName: "balanceOf", args: [acct.address] })) === 1_000_000n);

// 3. watchContractEvent over the WebSocket transport (eth_subscribe, not polling).
const ws = createPublicClient({ chain, transport: webSocket(wsUrl) });
let unwatch;
const event = new Promise((resolve, reject) => {
  unwatch = ws.watchContractEvent({ address: token, abi, eventName: "Transfer", onLogs: resolve, onError: reject });
});
await sleep(1000); // the subscription is requested asynchronously
before = await client.getBalance({ address: acct.address });
hash = await wallet.writeContract({ address: token, abi, functionName: "transfer", args: [bob, 250n] });
receipt = await wait(hash);
const logs = await withTimeout(event, 30000, "Transfer event");
unwatch();
check("event", logs.length === 1 && logs[0].args.to === bob && logs[0].args.value === 250n
  && logs[0].transactionHash === hash, logs);
await paidBaseFee("call", receipt, before, 0n);

// 4. A custom error: simulateContract throws ContractFunctionRevertedError with its name.
try {
  await client.simulateContract({ account: acct, address: token, abi, functionName: "transfer", args: [bob, 10n ** 30n] });
  check("reverts", false);
} catch (e) {
  const revert = e instanceof BaseError ? e.walk((x) => x instanceof ContractFunctionRevertedError) : null;
  check("custom error decoded", revert?.data?.errorName === "InsufficientBalance"
    && revert.data.args[1] === 10n ** 30n, e.shortMessage);
}

// 5. A call trace of the transfer, through the client's raw request.
const trace = await client.request({ method: "debug_traceTransaction", params: [hash, { tracer: "callTracer" }] });
check("trace", trace.type === "CALL" && trace.to === token.toLowerCase() && trace.environment === "evm"
  && BigInt(trace.gasUsed) === receipt.gasUsed && !trace.calls, trace);
check("trace input", decodeFunctionData({ abi, data: trace.input }).functionName === "transfer", trace.input);

console.log(JSON.stringify({ checks: passed(), address: acct.address }));
process.exit(0);
