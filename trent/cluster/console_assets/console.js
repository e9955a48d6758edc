// The Trent console: polls /_trent/console/state once a second and draws it; buttons post to the admin API.
// Everything is built with textContent (never innerHTML): key ids, aliases and principals come from clients.
"use strict";

const TOKEN_KEY = "trent-admin-token";
const HISTORY = 120; // samples of replication lag kept per region (two minutes at one a second)
const POLL_MS = 1000;
const lagHistory = new Map();
let token = null;
let timer = null;
let lastOk = 0;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("data-")) node.setAttribute(name, value);
    else node[name] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

async function api(path, body) {
  const init = { headers: { "X-Trent-Admin-Token": token }, cache: "no-store" };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const answer = await fetch(path, init);
  const doc = await answer.json().catch(() => ({}));
  if (answer.status === 403) throw Object.assign(new Error("the admin token was refused"), { refused: true });
  if (!answer.ok) throw new Error(doc.error || `HTTP ${answer.status}`);
  return doc;
}

function formatTime(epochSeconds) {
  return new Date(epochSeconds * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

function formatOffset(seconds) {
  if (!seconds) return "real time";
  const days = seconds / 86400;
  return days >= 1 ? `+${days.toFixed(days < 10 ? 1 : 0)} days ahead` : `+${Math.round(seconds / 3600)} h ahead`;
}

function sparkline(values) {
  const width = 280, height = 44;
  const box = svg("svg", { class: "spark", viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none",
                            role: "img", "aria-label": "replication lag over the last two minutes" });
  box.append(svg("line", { class: "axis", x1: 0, y1: height - 1, x2: width, y2: height - 1 }));
  if (values.length > 1) {
    const top = Math.max(1, ...values);
    const step = width / (HISTORY - 1);
    const offset = (HISTORY - values.length) * step;
    const points = values.map((v, i) =>
      `${(offset + i * step).toFixed(1)},${(height - 2 - (v / top) * (height - 6)).toFixed(1)}`);
    box.append(svg("polyline", { points: points.join(" ") }));
  }
  return box;
}

function recordLag(name, region) {
  const worst = Math.max(0, ...Object.values(region.replication).map((p) => p.lag_seconds));
  const series = lagHistory.get(name) || [];
  series.push(worst);
  while (series.length > HISTORY) series.shift();
  lagHistory.set(name, series);
  return worst;
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many || one + "s"}`;
}

function faultButton(label, action, region, extra = {}) {
  return el("button", { type: "button", "data-fault": action, "data-region": region,
                        class: action === "down" ? "danger" : "", ...extra }, label);
}

function drawRegions(doc) {
  const host = document.getElementById("regions");
  const cards = [];
  for (const [name, region] of Object.entries(doc.regions)) {
    const worst = recordLag(name, region);
    const peers = el("table");
    for (const [peer, link] of Object.entries(region.replication)) {
      const lagClass = !link.connected ? "unlinked" : link.lag_records > 0 ? "lagging" : "";
      peers.append(el("tr", { "data-peer": peer },
        el("td", {}, `from ${peer}`),
        el("td", { class: `num ${lagClass}` }, `${link.lag_records} behind · ${link.lag_seconds.toFixed(1)} s` +
          (link.connected ? "" : " · unreachable"))));
    }
    const latency = (doc.faults.latency_ms || {})[name];
    const card = el("div", { class: `region ${region.up ? "up" : "down"}`, "data-region": name },
      el("span", { class: "health", "data-health": region.up ? "up" : "down" }, region.up ? "up" : "down"),
      el("div", { class: "name" }, name),
      el("div", { class: "facts" },
        `${plural(region.keys, "key")} · ${region.multi_region_keys} multi-Region · ` +
        `${plural(region.aliases, "alias", "aliases")} · outbox #${region.outbox_head}` +
        (latency ? ` · +${latency} ms latency` : "")),
      sparkline(lagHistory.get(name)),
      el("div", { class: "note" }, `worst replication lag now ${worst.toFixed(1)} s`),
      peers,
      el("div", { class: "buttons" },
        region.up ? faultButton("Take down", "down", name) : faultButton("Bring up", "up", name),
        latency ? faultButton("No latency", "latency", name, { "data-value": "0" })
                : faultButton("+500 ms latency", "latency", name, { "data-value": "0.5" })));
    cards.push(card);
  }
  host.replaceChildren(...cards);
  const consistency = document.getElementById("consistency");
  const c = doc.consistency;
  consistency.className = c.consistent ? "note" : "note bad";
  consistency.textContent = c.consistent
    ? `${c.multi_region_keys} multi-Region keys, consistent in every region.`
    : `Diverging multi-Region keys (replication catching up): ${c.divergent_keys.join(", ")}`;
}

function drawKeys(doc) {
  const regions = Object.keys(doc.regions);
  const byId = new Map();
  for (const region of regions) {
    for (const key of (doc.keys[region] || { keys: [] }).keys) {
      const entry = byId.get(key.id) || { key, where: {} };
      entry.where[region] = key;
      if (key.primary) entry.key = key;
      byId.set(key.id, entry);
    }
  }
  const head = el("tr", {}, el("th", {}, "Key"), el("th", {}, "Spec"), el("th", {}, "Aliases"),
                  ...regions.map((r) => el("th", {}, r)), el("th", {}, "Multi-Region topology"));
  const rows = [];
  const entries = [...byId.values()].sort((a, b) => b.key.created - a.key.created);
  for (const { key, where } of entries) {
    const aliases = [...new Set(Object.values(where).flatMap((k) => k.aliases))];
    let topology = el("span", { class: "note" }, "single-Region");
    if (key.primary) {
      topology = el("div", { class: "topology" },
        el("span", { class: "primary", title: "primary" }, `★ ${key.primary}`),
        ...key.replicas.map((r) => el("span", { title: "replica" }, r)));
    }
    rows.push(el("tr", { "data-key": key.id },
      el("td", { class: "mono" }, key.id), el("td", {}, `${key.spec} · ${key.usage}`),
      el("td", { class: "mono" }, aliases.join(" ")),
      ...regions.map((r) => el("td", {}, where[r]
        ? el("span", { class: `state state-${where[r].state}` }, where[r].state) : "—")),
      el("td", {}, topology)));
  }
  const cut = regions.some((r) => doc.keys[r] && doc.keys[r].total > doc.keys[r].keys.length);
  const table = el("table", { class: "keys" }, el("thead", {}, head), el("tbody", {}, ...rows));
  const note = el("p", { class: "note" }, rows.length ? `${plural(rows.length, "key")}` +
                  (cut ? " (the newest of each region)." : ".") : "No keys yet.");
  document.getElementById("keys").replaceChildren(table, note);
}

function drawEvents(doc) {
  const rows = doc.events.map((e) => el("tr", {},
    el("td", { class: "mono" }, e.time), el("td", {}, e.region), el("td", {}, e.event),
    el("td", { class: e.error ? "outcome-bad" : "" }, e.error || "OK"),
    el("td", { class: "mono" }, e.principal || ""), el("td", { class: "mono" }, (e.keys || []).join(" "))));
  document.getElementById("events").replaceChildren(...rows);
}

function draw(doc) {
  document.getElementById("clock").textContent = formatTime(doc.clock.now);
  document.getElementById("clock-note").textContent =
    `Cluster time ${formatTime(doc.clock.now)} (${formatOffset(doc.clock.offset)}). Moving it forward runs ` +
    "what falls due: deletion windows, rotations, imported material expiring.";
  drawRegions(doc);
  drawKeys(doc);
  drawEvents(doc);
}

async function refresh() {
  const live = document.getElementById("live");
  try {
    const doc = await api("/_trent/console/state");
    draw(doc);
    lastOk = Date.now();
    live.textContent = "live";
    live.className = "live ok";
    document.getElementById("error").textContent = "";
  } catch (error) {
    if (error.refused) return showLogin("The cluster refused that admin token.");
    live.textContent = "cluster unreachable";
    live.className = "live stale";
  }
}

async function act(button, path, body) {
  button.disabled = true;
  try {
    await api(path, body);
    await refresh();
  } catch (error) {
    document.getElementById("error").textContent = `${body.action || "clock"}: ${error.message}`;
  } finally {
    button.disabled = false;
  }
}

function onClick(event) {
  const button = event.target.closest("button");
  if (!button) return;
  if (button.dataset.fault) {
    const body = { action: button.dataset.fault, regions: [button.dataset.region] };
    if (button.dataset.value !== undefined) body.value = Number(button.dataset.value);
    act(button, "/_trent/faults", body);
  } else if (button.dataset.action === "clear") {
    act(button, "/_trent/faults", { action: "clear", regions: [] });
  } else if (button.dataset.advance) {
    act(button, "/_trent/clock", { advance: button.dataset.advance });
  }
}

function showLogin(message) {
  clearInterval(timer);
  sessionStorage.removeItem(TOKEN_KEY);
  document.getElementById("app").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = message || "";
  document.getElementById("live").textContent = "";
}

function start(given) {
  token = given;
  sessionStorage.setItem(TOKEN_KEY, token);
  document.getElementById("login").hidden = true;
  document.getElementById("app").hidden = false;
  refresh();
  clearInterval(timer);
  timer = setInterval(refresh, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("app").addEventListener("click", onClick);
  document.getElementById("login").addEventListener("submit", (event) => {
    event.preventDefault();
    start(document.getElementById("token").value.trim());
  });
  // #token=... (a fragment never reaches a server); then out of the address bar and the history.
  const fragment = new URLSearchParams(location.hash.slice(1));
  const given = fragment.get("token") || sessionStorage.getItem(TOKEN_KEY);
  if (fragment.has("token")) history.replaceState(null, "", location.pathname);
  if (given) start(given); else showLogin();
});
