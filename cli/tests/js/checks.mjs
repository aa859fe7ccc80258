// What the ethers and viem scripts share: numbered checks that fail with their detail,
// a timeout for promises, a sleep. Copied beside each script by cli/tests/eth_rpc.rs.

const checks = [];
const t0 = Date.now();

/** Records a passed check, or throws with its name and detail (bigints printed). */
export function check(name, condition, detail = "") {
  if (!condition) {
    throw new Error(`${name}: ${typeof detail === "string" ? detail : JSON.stringify(detail, (_, v) => (typeof v === "bigint" ? v.toString() : v))}`);
  }
  checks.push(name);
  if (process.env.KEEL_JS_DEBUG) console.error(((Date.now() - t0) / 1000).toFixed(1), name);
}

/** How many checks passed. */
export const passed = () => checks.length;

export const withTimeout = (promise, ms, what) =>
  Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms))]);

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
