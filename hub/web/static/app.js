// Live stock page: one EventSource; the server batches updates, we patch rows in place.
"use strict";
const stock = new Map();   // "sku|location" -> qty
const nodes = new Map();   // node -> row
const stockBody = document.querySelector("#stock tbody");
const nodesBody = document.querySelector("#nodes tbody");
const marker = document.getElementById("live");
const search = document.getElementById("search");
let renderQueued = false;

function queueRender() {
  // Many messages in a burst become one paint.
  if (!renderQueued) { renderQueued = true; requestAnimationFrame(render); }
}

function render() {
  renderQueued = false;
  const q = search.value.trim().toLowerCase();
  const rows = [...stock.entries()]
    .filter(([key]) => !q || key.toLowerCase().includes(q))
    .sort(([a], [b]) => a.localeCompare(b)).slice(0, 500);
  stockBody.replaceChildren(...rows.map(([key, qty]) => {
    const [sku, location] = key.split("|");
    const tr = document.createElement("tr");
    tr.dataset.sku = sku; tr.dataset.location = location;
    for (const [text, cls] of [[sku, ""], [location, ""], [String(qty), "num"]]) {
      const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; tr.append(td);
    }
    return tr;
  }));
  nodesBody.replaceChildren(...[...nodes.values()].map((n) => {
    const tr = document.createElement("tr");
    tr.dataset.node = n.node;
    const seen = n.last_seen_ms ? new Date(n.last_seen_ms).toLocaleTimeString() : "never";
    const cells = [n.node, n.online ? "online" : "offline", n.last_seq ?? "", n.acked, n.outbox_depth ?? "", seen];
    cells.forEach((text, i) => {
      const td = document.createElement("td"); td.textContent = String(text);
      if (i === 1) td.className = n.online ? "ok" : "bad";
      if (i >= 2 && i <= 4) td.className = "num";
      tr.append(td);
    });
    return tr;
  }));
}

function apply(msg) {
  if (msg.snapshot) stock.clear();
  for (const s of msg.stock || []) stock.set(`${s.sku}|${s.location}`, s.qty);
  if (msg.snapshot) nodes.clear();
  for (const n of msg.nodes || []) nodes.set(n.node, n);
  if (msg.quarantined) {
    const el = document.getElementById("quarantine");
    el.textContent = `${msg.quarantined} payload(s) quarantined just now — see /api/v1/quarantine`;
  }
  queueRender();
}

function connect() {
  const source = new EventSource("/api/v1/live");
  source.onopen = () => { marker.textContent = "live"; marker.className = "marker ok"; };
  source.onmessage = (ev) => apply(JSON.parse(ev.data));
  source.onerror = () => { marker.textContent = "reconnecting…"; marker.className = "marker bad"; };
  // EventSource reconnects by itself; the server sends a fresh snapshot on every connect.
}

search.addEventListener("input", queueRender);
connect();
