// Live page updates: one EventSource per page, changes merged and painted once per frame,
// reconnect with Last-Event-ID so nothing is missed, and a visible live/reconnecting marker.
// No build step, no dependencies.
"use strict";
(() => {
  const PAGE_ROWS = 50;            // the stock table's page size (hub.web.pages.PAGE_ROWS)
  const PENDING_MAX = 5000;        // more distinct rows than this between paints: reload instead
  const SCANS_SHOWN = 30;          // the overview's recent scans (hub.web.pages.RECENT_SCANS)
  const RETRY_MAX_MS = 15000;
  // A new scan row flashes only when the table was quiet this long (the flash's own length):
  // a lone scan draws the eye; in a busy table every row would flash, which says nothing and
  // keeps the page repainting every frame (a background-colour animation is painted, not composited).
  const FLASH_QUIET_MS = 1200;
  const marker = document.getElementById("live");
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const page = document.body.dataset.page;
  const pending = { stock: new Map(), nodes: new Map(), replies: [], scans: [], resync: false };
  let frameQueued = false, lastId = null, source = null, retryMs = 1000, overviewTimer = null, lastScanRowMs = -Infinity;
  const waitingCommands = new Map(); // command id -> status element
  // Stock rows whose finished flash starts again next frame: a class removed and added within one
  // frame does not restart an animation, and forcing a layout in between (offsetWidth) would lay
  // the page out once per changed row.
  let reflash = new Set();

  function setMarker(state, text) {
    if (!marker) return;
    marker.textContent = text;
    marker.className = `marker ${state}`;
    marker.dataset.state = state;
  }

  function queuePaint() {
    if (!frameQueued) { frameQueued = true; requestAnimationFrame(paint); }
  }

  function onMessage(ev) {
    const msg = JSON.parse(ev.data);
    lastId = msg.id;
    if (msg.resync) pending.resync = true;
    for (const s of msg.stock || []) pending.stock.set(`${s.sku}|${s.location}`, s.qty);
    for (const n of msg.nodes || []) pending.nodes.set(n.node, n);
    for (const r of msg.replies || []) pending.replies.push(r);
    if (page === "overview") {
      if (msg.hub) refreshOverviewSoon(); // the hub's own link came or went: its alert with it
      for (const s of msg.scans || []) pending.scans.push(s);
      if (msg.snapshot) refreshScans(); // scans made between the page's render and this connection
    }
    pending.scans.splice(0, Math.max(0, pending.scans.length - SCANS_SHOWN));
    if (pending.stock.size > PENDING_MAX) { pending.stock.clear(); pending.resync = true; }
    pending.replies.splice(0, Math.max(0, pending.replies.length - 50));
    queuePaint();
  }

  function paint() {
    frameQueued = false;
    if (pending.resync) {
      pending.resync = false; pending.stock.clear(); pending.nodes.clear(); pending.scans.length = 0;
      reloadMain();
      return;
    }
    for (const row of reflash) row.classList.add("flash");
    reflash = new Set();
    if (pending.stock.size) paintStock(pending.stock);
    if (pending.nodes.size) paintNodes(pending.nodes);
    if (pending.replies.length) paintReplies(pending.replies.splice(0));
    if (pending.scans.length) paintScans(pending.scans.splice(0));
    if (page === "overview" && (pending.stock.size || pending.nodes.size)) refreshOverviewSoon();
    pending.stock.clear(); pending.nodes.clear();
    if (reflash.size) queuePaint();
  }

  function rowFor(key) {
    return document.querySelector(`tr[data-key="${CSS.escape(key)}"]`);
  }

  function paintStock(changes) {
    const table = document.getElementById("stock");
    const changed = [];
    for (const [key, qty] of changes) {
      const row = rowFor(key);
      if (row) {
        const cell = row.querySelector(".qty");
        cell.textContent = String(qty);
        cell.classList.toggle("bad", qty <= 0);
        markNegative(cell, qty);
        changed.push(row);
        const upd = row.querySelector(".upd");
        if (upd) upd.textContent = new Date().toISOString().slice(0, 19).replace("T", " ");
      } else if (table && table.dataset.liveInsert === "1") {
        insertStockRow(table.tBodies[0], key, qty);
      }
    }
    restartFlash(changed);
  }

  function restartFlash(rows) {
    // A flash still fading goes back to its start in place; a finished one needs its class again.
    // Every getAnimations() after the first finds the style already up to date: one style pass
    // for all the rows, and no layout.
    // (The flash is its cells' highlights fading: style.css, tr.flash.)
    const running = rows.map((row) => row.getAnimations({ subtree: true }).filter((a) => a.animationName === "flash"));
    rows.forEach((row, i) => {
      if (running[i].length) for (const a of running[i]) a.currentTime = 0;
      else { row.classList.remove("flash"); reflash.add(row); }
    });
  }

  // A negative balance always points at the discrepancies that explain it (the hub opens one
  // in the same commit); the page shows its number after a reload.
  function markNegative(cell, qty) {
    const flag = cell.parentElement.querySelector(".flag");
    if (qty < 0 && !flag) {
      const a = document.createElement("a"); a.className = "flag bad"; a.href = "/discrepancies";
      a.textContent = "see discrepancies"; cell.after(" ", a);
    } else if (qty >= 0 && flag) {
      flag.remove();
    }
  }

  function insertStockRow(body, key, qty) {
    const [sku, location] = key.split("|");
    const before = [...body.rows].find((r) => r.dataset.key > key);
    if (!before && body.rows.length >= PAGE_ROWS) return; // belongs on a later page
    const tr = document.createElement("tr");
    tr.dataset.key = key;
    const link = (href, text) => { const a = document.createElement("a"); a.href = href; a.textContent = text; return a; };
    const cells = [link(`/stock/${encodeURIComponent(sku)}`, sku), link(`/stock?location=${encodeURIComponent(location)}`, location)];
    for (const c of cells) { const td = document.createElement("td"); td.append(c); tr.append(td); }
    const q = document.createElement("td"); q.className = "num";
    const n = document.createElement("span"); n.className = `qty${qty <= 0 ? " bad" : ""}`; n.textContent = String(qty);
    q.append(n); markNegative(n, qty);
    // Stock at a location the hub does not count as available (quarantine) says so, as the server renders it.
    if (JSON.parse(body.parentElement.dataset.unavailable || "[]").includes(location)) {
      const na = document.createElement("span"); na.className = "warn unavailable"; na.textContent = "not available";
      na.title = "stock.unavailable_locations: not counted as available stock"; q.append(" ", na);
    }
    const u = document.createElement("td"); u.className = "upd"; u.textContent = new Date().toISOString().slice(0, 19).replace("T", " ");
    tr.append(q, u);
    tr.classList.add("flash");
    body.insertBefore(tr, before || null);
    while (body.rows.length > PAGE_ROWS) body.deleteRow(-1);
    const empty = document.getElementById("stock-empty");
    if (empty) empty.remove();
  }

  function paintNodes(changes) {
    let reload = false;
    for (const [name, n] of changes) {
      const row = document.querySelector(`tr[data-node="${CSS.escape(name)}"]`);
      if (!row) { if (page === "nodes") reload = true; continue; }
      // New notices (a birth): the server renders them, with which ones are red.
      if (row.dataset.notices && JSON.stringify(JSON.parse(row.dataset.notices)) !== JSON.stringify(n.notices || [])) reload = true;
      const state = row.querySelector(".state");
      state.textContent = n.online ? "online" : "offline";
      state.className = `state ${n.online ? "ok" : "bad"}`;
      const set = (sel, text) => { const el = row.querySelector(sel); if (el) el.textContent = text; };
      set(".seen", n.last_seen_ms ? new Date(n.last_seen_ms).toISOString().slice(0, 19).replace("T", " ") : "—");
      set(".outbox", n.outbox_depth ?? "—");
      set(".skew", n.clock_skew_ms == null ? "—" : `${n.clock_skew_ms >= 0 ? "+" : ""}${n.clock_skew_ms} ms`);
      set(".acked", `${n.acked} / ${n.last_seq}`);
    }
    if (reload) reloadMain();
  }

  function paintReplies(replies) {
    const list = document.getElementById("replies");
    for (const r of replies) {
      const waiting = waitingCommands.get(r.id);
      if (waiting) { waiting.textContent = `${r.ok ? "done" : "failed"}: ${r.message}`; waitingCommands.delete(r.id); }
      if (!list) continue;
      const li = document.createElement("li");
      li.className = r.ok ? "ok" : "bad";
      li.textContent = `${new Date(r.ts_ms).toISOString().slice(0, 19).replace("T", " ")} · ${r.node} · ${r.id}: ${r.message}`;
      list.prepend(li);
      const none = list.querySelector(".none"); if (none) none.remove();
      while (list.children.length > 50) list.lastElementChild.remove();
    }
  }

  const hubTime = (ms) => new Date(ms).toISOString().slice(0, 19).replace("T", " ");

  function scanRow(s) {
    // The same row as overview.html's scan_row macro.
    const tr = document.createElement("tr");
    tr.dataset.scanId = String(s.id); tr.dataset.outcome = s.outcome;
    for (const text of [hubTime(s.hub_ms), s.node, s.scanner]) {
      const td = document.createElement("td"); td.textContent = text; tr.append(td);
    }
    tr.firstChild.className = "time";
    const out = document.createElement("td"); out.className = "outcome";
    if (s.outcome === "accepted") {
      const mode = Object.assign(document.createElement("span"), { className: "mode ok", textContent: s.mode });
      const what = s.sku || s.gtin;
      const link = Object.assign(document.createElement("a"), { href: `/stock/${encodeURIComponent(what)}`, textContent: what });
      out.append(mode, ` ${s.qty} × `, link, ` at ${s.location}${s.from_location ? `, from ${s.from_location}` : ""}`
                 + `${s.lot ? `, lot ${s.lot}` : ""}`);
      if (s.return_reason) {
        out.append(" ", Object.assign(document.createElement("span"), { className: "return-reason", textContent: `(${s.return_reason})` }));
      }
    } else {
      out.append(Object.assign(document.createElement("span"), { className: "reason bad", textContent: `rejected: ${s.reason}` }));
      if (s.raw) out.append(" ", Object.assign(document.createElement("code"), { className: "raw", textContent: s.raw }));
    }
    tr.append(out);
    return tr;
  }

  function paintScans(scans) {
    // Oldest first in, newest on top; ids never repeat and rows beyond SCANS_SHOWN are dropped.
    const table = document.getElementById("scans");
    if (!table) return;
    const body = table.tBodies[0];
    const newest = body.rows.length ? Number(body.rows[0].dataset.scanId) : 0;
    const now = performance.now();
    const flash = now - lastScanRowMs >= FLASH_QUIET_MS;
    for (const s of scans) {
      if (s.id <= newest || body.querySelector(`tr[data-scan-id="${s.id}"]`)) continue;
      const tr = scanRow(s);
      if (flash) tr.classList.add("flash");
      body.prepend(tr);
      lastScanRowMs = now;
    }
    while (body.rows.length > SCANS_SHOWN) body.deleteRow(-1);
    const empty = document.getElementById("scans-empty");
    if (empty && body.rows.length) empty.remove();
  }

  async function refreshScans() {
    const resp = await fetch(`/api/v1/scans?limit=${SCANS_SHOWN}`, { credentials: "same-origin" });
    if (!resp.ok) return;
    paintScans((await resp.json()).items.reverse());
  }

  function refreshOverviewSoon() {
    if (overviewTimer) return; // at most one refresh a second, whatever the event rate
    overviewTimer = setTimeout(async () => {
      overviewTimer = null;
      const resp = await fetch("/api/v1/overview", { credentials: "same-origin" });
      if (!resp.ok) return;
      const data = await resp.json();
      // Only what changed is written: a rewrite with the same values still costs every open
      // page a layout and paint of everything below the counters, once a second.
      for (const [key, value] of Object.entries(data.counters)) {
        const el = document.querySelector(`[data-counter="${key}"]`);
        if (!el || value === null) continue;
        const n = el.querySelector(".n");
        if (n.textContent !== String(value)) n.textContent = String(value);
        if (el.classList.contains("hot") !== value > 0) el.classList.toggle("hot", value > 0);
      }
      const list = document.getElementById("alerts");
      if (!list) return;
      const fresh = data.alerts.length ? data.alerts.map((a) => {
        const li = document.createElement("li"); li.className = a.severity; li.dataset.kind = a.kind;
        const link = document.createElement("a"); link.href = a.href; link.textContent = a.text; li.append(link);
        return li;
      }) : [Object.assign(document.createElement("li"), { className: "none", textContent: "Nothing needs you right now." })];
      const same = fresh.length === list.children.length && fresh.every((li, i) => li.isEqualNode(list.children[i]));
      if (!same) list.replaceChildren(...fresh);
    }, 1000);
  }

  async function reloadMain() {
    // Catch up after a gap: fetch this page again and swap its content, keeping the connection.
    const resp = await fetch(location.href, { credentials: "same-origin" });
    if (resp.redirected && new URL(resp.url).pathname === "/login") { location.href = resp.url; return; }
    const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
    const fresh = doc.getElementById("main");
    if (fresh) document.getElementById("main").replaceChildren(...fresh.childNodes);
  }

  function connect() {
    const url = `/api/v1/live?stock=0${lastId === null ? "" : `&last_id=${lastId}`}`;
    source = new EventSource(url);
    source.onopen = () => { retryMs = 1000; setMarker("ok", "live"); };
    source.onmessage = onMessage;
    source.onerror = async () => {
      setMarker("bad", "reconnecting…");
      if (source.readyState !== EventSource.CLOSED) return; // the browser retries by itself, with Last-Event-ID
      source.close();
      const me = await fetch("/api/v1/me", { credentials: "same-origin" }).catch(() => null);
      if (me && me.status === 401) { location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`; return; }
      setTimeout(connect, retryMs);
      retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
    };
  }

  async function post(url, body) {
    const resp = await fetch(url, { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body || {}) });
    let data = {};
    try { data = await resp.json(); } catch (e) { /* not JSON: keep the status */ }
    return { ok: resp.ok, status: resp.status, data };
  }

  document.addEventListener("click", async (ev) => {
    const button = ev.target.closest("button[data-post], button[data-cmd]");
    if (!button) return;
    const box = button.closest(".actions, .cmds, li, td");
    let status = box.querySelector(".result");
    if (!status) { status = document.createElement("span"); status.className = "result"; status.setAttribute("role", "status"); box.append(status); }
    button.disabled = true;
    try {
      if (button.dataset.post) {
        const body = {};
        if (button.dataset.note) body.note = button.dataset.note;
        if (button.dataset.withQty) body.qty = Number(document.getElementById(button.dataset.withQty).value);
        const r = await post(button.dataset.post, body);
        status.textContent = r.ok ? button.dataset.done : `refused: ${r.data.error || r.status}`;
        status.className = `result ${r.ok ? "ok" : "bad"}`;
      } else {
        const cmds = button.closest(".cmds");
        const body = { cmd: button.dataset.cmd, target: cmds.dataset.target || null };
        if (button.dataset.weightInput) {
          const grams = document.getElementById(button.dataset.weightInput).value;
          if (grams) body.known_weight_g = Number(grams);  // empty: the hub says what is missing
        }
        const r = await post(`/api/v1/nodes/${encodeURIComponent(cmds.dataset.node)}/commands`, body);
        status.textContent = r.ok ? `${button.dataset.cmd} sent; waiting for the node…` : `refused: ${r.data.error || r.status}`;
        status.className = `result ${r.ok ? "" : "bad"}`;
        if (r.ok) waitingCommands.set(r.data.id, status);
      }
    } finally { button.disabled = false; }
  });

  if (marker) { setMarker("wait", "connecting…"); connect(); }
})();
