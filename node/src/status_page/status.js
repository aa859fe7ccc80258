// keel's status page: everything comes from this node's JSON-RPC over one WebSocket
// (keel_status, keel_getValidators, keel_getBlock, keel_subscribe("finalizedBlocks"), and
// the search's lookups). Every value from the node is written as text, never as HTML.
"use strict";

const RECENT_BLOCKS = 12;
const POLL_MS = 1000;
const REQUEST_TIMEOUT_MS = 10000;
const EXPIRED = -32006;

const $ = (id) => document.getElementById(id);

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") node.className = v;
    else if (k === "onclick") node.addEventListener("click", v);
    else node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function short(hex, n = 10) {
  return typeof hex === "string" && hex.length > n + 6 ? `${hex.slice(0, n)}…${hex.slice(-4)}` : String(hex);
}

function ago(ms) {
  if (ms === null || ms === undefined) return "never";
  if (ms < 1000) return `${ms} ms ago`;
  if (ms < 120000) return `${(ms / 1000).toFixed(1)} s ago`;
  return `${Math.round(ms / 60000)} min ago`;
}

const LOOPBACK = /^(127\.|localhost$|\[::1\]$)/;

function rpcAddress() {
  const meta = document.querySelector('meta[name="keel-rpc"]').content;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return meta.startsWith(":") ? `${scheme}://${location.hostname}${meta}` : `${scheme}://${meta}`;
}

// One WebSocket, JSON-RPC requests by id, subscriptions by their id; reconnects.
class Rpc {
  constructor(url, onOpen, onNotification) {
    this.url = url;
    this.onOpen = onOpen;
    this.onNotification = onNotification;
    this.nextId = 1;
    this.waiting = new Map();
    this.backoffMs = 500;
    this.connect();
  }

  connect() {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => {
      this.backoffMs = 500;
      setConnected(true);
      this.onOpen();
    };
    ws.onmessage = (event) => {
      let msg;
      try { msg = JSON.parse(event.data); } catch { return; }
      if (msg.id !== undefined && this.waiting.has(msg.id)) {
        const { resolve, reject, timer } = this.waiting.get(msg.id);
        clearTimeout(timer);
        this.waiting.delete(msg.id);
        if (msg.error) reject(msg.error); else resolve(msg.result);
      } else if (msg.method && msg.params) {
        this.onNotification(msg.params.subscription, msg.params.result);
      }
    };
    ws.onclose = () => {
      setConnected(false);
      for (const { reject, timer } of this.waiting.values()) {
        clearTimeout(timer);
        reject({ message: "connection closed" });
      }
      this.waiting.clear();
      setTimeout(() => this.connect(), this.backoffMs);
      this.backoffMs = Math.min(this.backoffMs * 2, 8000);
    };
  }

  call(method, params = []) {
    return new Promise((resolve, reject) => {
      if (this.ws.readyState !== WebSocket.OPEN) {
        reject({ message: "not connected" });
        return;
      }
      const id = this.nextId++;
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject({ message: `${method} timed out` });
      }, REQUEST_TIMEOUT_MS);
      this.waiting.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
    });
  }
}

function setConnected(up) {
  const conn = $("conn");
  conn.textContent = up ? "live" : "reconnecting";
  conn.className = `pill ${up ? "up" : "down"}`;
}

const blocks = []; // newest first
let blockSubscription = null;
let validatorKeys = [];

function text(id, value) {
  const node = $(id);
  const s = value === null || value === undefined ? "–" : String(value);
  if (node.textContent !== s) node.textContent = s;
}

function renderStatus(s) {
  text("chain", `chain ${s.chain_id}`);
  text("height", s.height);
  text("finalized", s.finalized_height);
  text("epoch", s.epoch);
  text("view", s.view);
  text("peers", `${s.peers} / ${s.validators - 1}`);
  text("mempool", s.mempool_size);
  text("oldest-retained", s.oldest_retained);
  if (s.expiry) {
    text("active-entries", s.expiry.active_entries);
    text("stubs", s.expiry.stubs);
    text("fold-pages", s.expiry.fold_pages);
    text("revived", s.expiry.revived);
    text("expiry-epochs", s.expiry.expiry_epochs ? `${s.expiry.expiry_epochs} epochs` : "off");
  }
  const halted = $("halted");
  halted.hidden = !s.halted;
  halted.textContent = s.halted ? `halted: ${s.halted}` : "";
  const sync = $("sync");
  sync.hidden = !(s.sync && s.sync.catching_up);
  sync.textContent = s.sync ? `catching up: view ${s.sync.view} of ${s.sync.sync_target || s.sync.honest_view_heard}` : "";
}

function renderValidators(v) {
  text("quorum", `epoch ${v.epoch}, ${v.members} in the set, quorum more than 2/3 of ${v.total_power} power`);
  validatorKeys = v.validators.map((x) => x.public_key);
  const rows = v.validators.map((x) =>
    el("tr", { "data-index": x.index, "data-up": x.up },
      el("td", {}, x.index, x.self ? " (this node)" : ""),
      el("td", { class: "mono", title: x.public_key }, short(x.public_key, 12)),
      el("td", { class: "mono" }, x.p2p),
      el("td", {}, el("span", { class: `pill ${x.up ? "up" : "down"}` }, x.up ? "up" : "down")),
      el("td", {}, x.last_vote_age_ms === null ? "not heard" : `view ${x.last_vote_view}, ${ago(x.last_vote_age_ms)}`),
      el("td", {}, x.proposed),
      el("td", {}, x.missed_proposals),
      el("td", {}, x.in_set ? x.power : "not in the set")));
  $("validators").tBodies[0].replaceChildren(...rows);
}

function proposerLabel(hex) {
  const i = validatorKeys.indexOf(hex);
  return i >= 0 ? `#${i}` : short(hex);
}

let liveBlocks = 0; // blocks delivered by the subscription

function renderBlocks() {
  const now = Date.now();
  const rows = blocks.map((b) => {
    const row = el("tr", { class: "clickable", "data-height": b.height, onclick: () => { lookup++; showBlock(b).catch(fail); } },
      el("td", {}, b.height),
      el("td", { class: "mono" }, short(b.hash)),
      el("td", {}, proposerLabel(b.proposer)),
      el("td", {}, b.transactions.length),
      el("td", {}, ago(Math.max(0, now - b.timestamp_ms))));
    if (b.fresh) { row.classList.add("fresh"); b.fresh = false; }
    return row;
  });
  $("blocks").tBodies[0].replaceChildren(...rows);
  $("blocks").dataset.live = String(liveBlocks);
  if (blocks.length >= 2) {
    const span = blocks[0].timestamp_ms - blocks[blocks.length - 1].timestamp_ms;
    const gaps = blocks[0].height - blocks[blocks.length - 1].height;
    if (gaps > 0) text("block-time", `${Math.round(span / gaps)} ms`);
  }
}

function addBlock(b, fresh) {
  if (blocks.some((x) => x.height === b.height)) return;
  b.fresh = fresh;
  blocks.push(b);
  blocks.sort((x, y) => y.height - x.height);
  blocks.length = Math.min(blocks.length, RECENT_BLOCKS);
  renderBlocks();
}

async function loadRecent(rpc) {
  const latest = await rpc.call("keel_getBlock", ["latest"]);
  if (!latest) return;
  addBlock(latest, false);
  const from = Math.max(1, latest.height - RECENT_BLOCKS + 1);
  const older = [];
  for (let h = latest.height - 1; h >= from; h--) older.push(rpc.call("keel_getBlock", [h]).catch(() => null));
  for (const b of await Promise.all(older)) if (b) addBlock(b, false);
}

let polling = false;

async function poll(rpc) {
  // One poll at a time: a slow node must not pile requests up.
  if (polling) return;
  polling = true;
  try {
    const [status, validators] = await Promise.all([rpc.call("keel_status"), rpc.call("keel_getValidators")]);
    renderStatus(status);
    renderValidators(validators);
  } catch (e) {
    // The connection's own indicator says so; the next poll retries.
  } finally {
    polling = false;
  }
}

// ---- search ----

function dl(pairs) {
  const list = el("dl");
  for (const [k, v] of pairs) list.append(el("dt", {}, k), el("dd", {}, v === null || v === undefined ? "–" : v));
  return list;
}

// Each lookup shows its result only if no later one started meanwhile.
let lookup = 0;
const fail = (e) => showResult(el("p", { class: "error" }, `lookup failed: ${e && e.message ? e.message : e}`));

function showResult(...nodes) {
  const result = $("result");
  result.hidden = false;
  result.replaceChildren(...nodes);
}

async function showTransaction(hash) {
  const mine = lookup;
  const [receipt, tx] = await Promise.all([
    rpc.call("keel_getReceipt", [hash]),
    rpc.call("eth_getTransactionByHash", [hash]).catch(() => null),
  ]);
  if (!receipt && !tx) return false;
  if (mine !== lookup) return true;
  const pairs = [["transaction", hash]];
  if (tx) pairs.push(["from", tx.from], ["to", tx.to || "(deploy)"], ["value", BigInt(tx.value).toString()], ["nonce", BigInt(tx.nonce).toString()]);
  if (receipt) {
    pairs.push(["status", receipt.status], ["block", receipt.block], ["gas used", receipt.gas_used]);
    if (receipt.contract_address) pairs.push(["contract", receipt.contract_address]);
    pairs.push(["logs", receipt.logs.length]);
    if (receipt.error) pairs.push(["error", `${receipt.error.code}: ${receipt.error.message}`]);
  } else {
    pairs.push(["status", "pending (in the mempool)"]);
  }
  showResult(el("h3", {}, "Transaction"), dl(pairs));
  return true;
}

async function showBlock(b) {
  const mine = lookup;
  const rows = await Promise.all(b.transactions.map(async (hash) => {
    const r = await rpc.call("keel_getReceipt", [hash]).catch(() => null);
    return el("tr", { class: "clickable", onclick: () => { lookup++; showTransaction(hash).catch(fail); } },
      el("td", { class: "mono" }, hash), el("td", {}, r ? r.status : "?"), el("td", {}, r ? r.gas_used : "?"));
  }));
  const txs = rows.length
    ? el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "transaction"), el("th", {}, "status"), el("th", {}, "gas"))), el("tbody", {}, ...rows))
    : el("p", {}, "no transactions");
  if (mine !== lookup) return;
  showResult(el("h3", {}, `Block ${b.height}`), dl([
    ["hash", b.hash], ["parent", b.parent_hash], ["epoch / view", `${b.epoch} / ${b.view}`],
    ["proposer", `${proposerLabel(b.proposer)} ${b.proposer}`], ["time", new Date(b.timestamp_ms).toISOString()],
    ["state root", b.state_root],
  ]), txs);
}

async function showAccount(address) {
  const mine = lookup;
  const rpcUrl = `http://${new URL(rpcAddress()).host}`;
  try {
    const [account, code] = await Promise.all([
      rpc.call("keel_getAccount", [address]),
      rpc.call("eth_getCode", [address, "latest"]).catch(() => "0x"),
    ]);
    if (mine !== lookup) return;
    showResult(el("h3", {}, "Account"), dl([
      ["address", address], ["balance", BigInt(account.balance).toString()], ["nonce", account.nonce],
      ["pending nonce", account.pending_nonce], ["environment", account.env || "none (not a contract)"],
      ["code size", `${Math.max(0, (code.length - 2) / 2)} bytes`], ["expiry", "live"],
    ]));
  } catch (e) {
    if (e.code !== EXPIRED) throw e;
    if (mine !== lookup) return;
    const epoch = e.data ? e.data.expired_epoch : "?";
    const command = `keel query proof ${address} --rpc ${rpcUrl} > proof.json\n` +
      `keel tx revive --key KEY.json --proof proof.json --rpc ${rpcUrl} --wait`;
    showResult(el("h3", {}, "Account"), dl([
      ["address", address], ["expiry", `expired in epoch ${epoch}${e.data && e.data.folded ? " (folded)" : ""}`],
    ]), el("p", {}, "Revive it (anyone may pay) with:"), el("pre", { id: "revive-command" }, command));
  }
}

async function search(query) {
  const q = query.trim();
  if (/^\d{1,15}$/.test(q)) {
    const b = await rpc.call("keel_getBlock", [Number(q)]);
    if (b) return showBlock(b);
    return showResult(el("p", { class: "error" }, `no block at height ${q}`));
  }
  const hex = q.startsWith("0x") ? q : `0x${q}`;
  if (/^0x[0-9a-fA-F]{40}$/.test(hex)) return showAccount(hex);
  if (/^0x[0-9a-fA-F]{64}$/.test(hex)) {
    if (await showTransaction(hex)) return;
    const eth = await rpc.call("eth_getBlockByHash", [hex, false]).catch(() => null);
    if (eth) {
      const b = await rpc.call("keel_getBlock", [Number(BigInt(eth.number))]);
      if (b) return showBlock(b);
    }
    return showResult(el("p", { class: "error" }, `no transaction or block ${hex} on this node`));
  }
  showResult(el("p", { class: "error" }, "enter a transaction hash or block hash (32 bytes), a block height, or an address (20 bytes)"));
}

// ---- start ----

const rpc = new Rpc(rpcAddress(), async () => {
  blockSubscription = null;
  try {
    blockSubscription = await rpc.call("keel_subscribe", ["finalizedBlocks"]);
    await loadRecent(rpc);
  } catch (e) {
    // Shown by the indicator; a reconnect starts over.
  }
  poll(rpc);
}, (subscription, block) => {
  if (subscription === blockSubscription && block) {
    liveBlocks++;
    addBlock(block, true);
  }
});

setInterval(() => { poll(rpc); renderBlocks(); }, POLL_MS);

$("search").addEventListener("submit", (event) => {
  event.preventDefault();
  lookup++;
  search($("search-input").value).catch(fail);
});

// A node whose RPC listens on loopback only serves this page to remote browsers, which
// would then read their own machine's port: say so instead.
if (LOOPBACK.test(new URL(rpcAddress()).hostname) && !LOOPBACK.test(location.hostname)) {
  const warn = $("warn");
  warn.hidden = false;
  warn.textContent = "this node's RPC listens on loopback only: open the page on the node's machine";
}
