// The status page in headless Chromium (Debian's, driven by playwright-core) against a real
// devnet (cli/tests/status_page.rs): the page loads with no script error or blocked
// resource, goes live over the WebSocket, shows the validators with the stopped one down,
// shows a block arriving by subscription, and finds a transaction by hash, a block by
// height and an account by address; nonsense gets an explanation.
//
// Usage: node status_page_test.mjs '<context json>'; prints {"checks": n} when all pass.
import { check, passed, withTimeout } from "./checks.mjs";
import { chromium } from "playwright-core";

const ctx = JSON.parse(process.argv[2]);
const WAIT_MS = 20000;

const browser = await chromium.launch({
  executablePath: ctx.chromium || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));

  const response = await page.goto(ctx.url);
  check("page loads", response.ok(), `${response.status()}`);
  check("content security policy", (response.headers()["content-security-policy"] || "").includes("script-src 'self'"));
  await page.waitForFunction(() => document.getElementById("conn").textContent === "live", null, { timeout: WAIT_MS });
  check("live over the WebSocket", true);
  await page.waitForFunction(() => /^chain \d+$/.test(document.getElementById("chain").textContent), null, { timeout: WAIT_MS });
  check("chain id shown", (await page.textContent("#chain")) === `chain ${ctx.chain_id}`);

  // Validators: every one listed with its key and p2p address, the stopped one down.
  await page.waitForFunction((n) => document.querySelectorAll("#validators tbody tr").length === n, ctx.validators.length, { timeout: WAIT_MS });
  await page.waitForFunction((down) => {
    const row = document.querySelector(`#validators tbody tr[data-index="${down}"]`);
    return row && row.dataset.up === "false";
  }, ctx.down, { timeout: WAIT_MS });
  const rows = await page.$$eval("#validators tbody tr", (trs) => trs.map((tr) => ({
    index: Number(tr.dataset.index), up: tr.dataset.up === "true",
    key: tr.children[1].title, p2p: tr.children[2].textContent, lastVote: tr.children[4].textContent,
    self: tr.children[0].textContent.includes("this node"),
    proposed: Number(tr.children[5].textContent), missed: Number(tr.children[6].textContent),
    power: tr.children[7].textContent,
  })));
  for (const v of ctx.validators) {
    const row = rows.find((r) => r.index === v.index);
    check(`validator ${v.index} key`, row && row.key === v.public_key, row);
    check(`validator ${v.index} p2p`, row.p2p === v.p2p, row);
    check(`validator ${v.index} power`, row.power === v.power, row);
    check(`validator ${v.index} ${v.index === ctx.down ? "down" : "up"}`, row.up === (v.index !== ctx.down), row);
    if (v.index !== ctx.down) {
      check(`validator ${v.index} voted`, /^view \d+, /.test(row.lastVote), row);
      check(`validator ${v.index} proposed`, row.proposed > 0, row);
    }
  }
  check("served by node 0", rows.find((r) => r.self)?.index === 0, rows);
  const stopped = rows.find((r) => r.index === ctx.down);
  const othersMissed = Math.max(...rows.filter((r) => r.index !== ctx.down).map((r) => r.missed));
  check("the stopped validator led views with no block", stopped.missed > othersMissed, rows);

  // A block arrives: the blocks table is filled only by the finalizedBlocks subscription
  // (after the first load), so a newer top row means the subscription delivered it.
  await page.waitForSelector("#blocks tbody tr", { timeout: WAIT_MS });
  const top = async () => Number(await page.getAttribute("#blocks tbody tr:first-child", "data-height"));
  const first = await top();
  const live = async () => Number(await page.getAttribute("#blocks", "data-live"));
  const liveBefore = await live();
  await page.waitForFunction(([h, n]) => {
    const row = document.querySelector("#blocks tbody tr:first-child");
    return row && Number(row.dataset.height) > h && Number(document.getElementById("blocks").dataset.live) > n;
  }, [first, liveBefore], { timeout: WAIT_MS });
  check("a block arrives by subscription", (await top()) > first && (await live()) > liveBefore);
  const height = Number(await page.textContent("#height"));
  check("height shown", height >= ctx.tx_block, height);
  await page.waitForFunction(() => /^\d+ ms$/.test(document.getElementById("block-time").textContent), null, { timeout: WAIT_MS });
  check("block time shown", true);
  check("expiry figures shown", /^\d+$/.test(await page.textContent("#active-entries")));

  const search = async (query, expect) => {
    await page.fill("#search-input", query);
    await page.click("#search button");
    await page.waitForFunction((text) => {
      const r = document.getElementById("result");
      return !r.hidden && r.textContent.includes(text);
    }, expect, { timeout: WAIT_MS });
    return page.textContent("#result");
  };

  // A transaction by hash.
  const tx = await search(ctx.tx_hash, ctx.tx_hash);
  check("transaction found", tx.includes("Transaction") && tx.includes("success"), tx);
  check("transaction block", tx.includes(`block${ctx.tx_block}`), tx);
  check("transaction sender", tx.toLowerCase().includes(ctx.tx_from.toLowerCase()), tx);
  // Its block by height lists it.
  const block = await search(String(ctx.tx_block), `Block ${ctx.tx_block}`);
  check("block lists the transaction", block.includes(ctx.tx_hash), block);
  // The recipient by address.
  const account = await search(ctx.recipient, "Account");
  check("account balance", account.includes(`balance${ctx.recipient_balance}`), account);
  check("account is live", account.includes("expirylive"), account);
  // Nonsense is explained, not thrown.
  const nonsense = await search("hello", "enter a transaction hash");
  check("nonsense explained", nonsense.includes("address"), nonsense);
  // A hash the node has never seen.
  const unknown = await search(`0x${"ab".repeat(32)}`, "no transaction or block");
  check("unknown hash", unknown.includes("no transaction or block"), unknown);

  if (ctx.screenshot) {
    await page.fill("#search-input", ctx.tx_hash);
    await page.click("#search button");
    await page.waitForTimeout(500);
    await page.screenshot({ path: ctx.screenshot, fullPage: true });
  }
  check("no script errors or failed requests", problems.length === 0, problems);
} finally {
  await withTimeout(browser.close(), 10000, "closing the browser");
}
console.log(JSON.stringify({ checks: passed() }));
