// The status page's account search for an expired account (cli/tests/expiry.rs): it says the
// account expired, in which epoch (in the range the test expects; for a folded stub, that it
// is folded), and shows the two commands that revive it — a proof from `keel query proof`,
// the same command the test then runs, and `keel tx revive`.
//
// Usage: node status_page_expired.mjs '<context json>'; prints {"checks": n} when all pass.
import { check, passed, withTimeout } from "./checks.mjs";
import { chromium } from "playwright-core";

const ctx = JSON.parse(process.argv[2]);
const browser = await chromium.launch({
  executablePath: ctx.chromium || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  await page.goto(ctx.url);
  await page.waitForFunction(() => document.getElementById("conn").textContent === "live", null, { timeout: 20000 });
  await page.fill("#search-input", ctx.address);
  await page.click("#search button");
  await page.waitForSelector("#revive-command", { timeout: 20000 });
  const result = await page.textContent("#result");
  const epoch = Number((result.match(/expired in epoch (\d+)/) || [])[1]);
  check("says it expired", Number.isInteger(epoch), result);
  if (ctx.folded) check("says it is folded", result.includes("(folded)"), result);
  else check("in the expected epoch", epoch >= ctx.min_epoch && epoch <= ctx.max_epoch, { epoch, ctx });
  const command = await page.textContent("#revive-command");
  check("proof command", command.includes(`keel query proof ${ctx.address} --rpc ${ctx.rpc} > proof.json`), command);
  check("revive command", command.includes("keel tx revive --key KEY.json --proof proof.json"), command);
  check("no script errors", problems.length === 0, problems);
} finally {
  await withTimeout(browser.close(), 10000, "closing the browser");
}
console.log(JSON.stringify({ checks: passed() }));
