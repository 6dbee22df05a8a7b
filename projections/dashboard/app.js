// The dashboard: the fleet (summary, devices, recent commands, campaigns, updates, read models, audit tail) and a
// device's page (facts, telemetry charts, shadow, command form, command history), from /api.
"use strict";

// The token comes from the page address (#token=...) and stays in this tab only. Without one
// the browser's client certificate (over HTTPS) is the only credential, so none is sent.
const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromHash) sessionStorage.setItem("token", fromHash);
const token = sessionStorage.getItem("token");
const REFRESH_MS = 5000;

class Problem extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function call(path, options = {}) {
  const headers = { ...(options.headers || {}), ...(token ? { Authorization: "Bearer " + token } : {}) };
  const answer = await fetch(path, { ...options, headers });
  const body = await answer.json().catch(() => ({ error: answer.statusText }));
  if (!answer.ok) throw new Problem(answer.status, body.error || answer.statusText);
  return body;
}
const get = path => call(path);

// --- time, as people read it ---------------------------------------------------------------

// "Dec 7, 2026, 4:05:12 AM" in the browser's own zone and language; never the stored ISO string.
function when(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString([], { dateStyle: "medium", timeStyle: "medium" });
}

// "12 s ago", "5 min ago", "3 h ago", "2 d ago"; "never" when there is no time.
function ago(iso, now = Date.now()) {
  if (!iso) return "never";
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

// --- tables ----------------------------------------------------------------------------------

// A cell is its text, or {text, css, href, title, node}; text is always set as text, never as
// HTML; `node` is an element built by this script (a campaign's bar), appended after the text.
function cellOf(spec) {
  const td = document.createElement("td");
  const cell = typeof spec === "object" && spec !== null ? spec : { text: spec };
  let target = td;
  if (cell.href) {
    target = document.createElement("a");
    target.href = cell.href;
    td.append(target);
  }
  target.textContent = cell.text ?? "";
  if (cell.node) td.append(cell.node);
  if (cell.css) td.className = cell.css;
  if (cell.title) td.title = cell.title;
  return td;
}

function rowOf(item, cells) {
  const tr = document.createElement("tr");
  tr.append(...cells(item).map(cellOf));
  return tr;
}

// The table's rows; with none, one row that says so (an empty table reads as still loading).
function fill(table, items, cells, none = "None yet.") {
  const body = document.querySelector("#" + table + " tbody");
  if (items.length) {
    body.replaceChildren(...items.map(item => rowOf(item, cells)));
    return;
  }
  const td = document.createElement("td");
  td.colSpan = document.querySelectorAll("#" + table + " thead th").length;
  td.className = "note empty";
  td.textContent = none;
  const tr = document.createElement("tr");
  tr.append(td);
  body.replaceChildren(tr);
}

const deviceHref = id => "#device=" + encodeURIComponent(id);
const tagsText = tags => Object.entries(tags || {}).map(([key, value]) => key + "=" + value).join(", ");
const timeCell = iso => ({ text: when(iso), title: iso ? ago(iso) : "" });
const agoCell = iso => ({ text: ago(iso), title: when(iso) });

// --- panels by role --------------------------------------------------------------------------

// What the caller may run (/api/me); the panels whose query is not among them are left out.
async function keepPermittedPanels() {
  const me = await get("/api/me");
  document.getElementById("who").textContent = `${me.identity} · ${me.role}`;
  document.body.dataset.role = me.role;
  const may = new Set(me.may);
  for (const panel of document.querySelectorAll("[data-needs]")) {
    if (!may.has(panel.dataset.needs)) panel.remove();
  }
}

// Loads one panel on its own: a panel that fails says so inside itself and the others still load.
// A 403 means the role changed since the page loaded: the panel goes, as if never there.
async function load(panelId, work) {
  const panel = document.getElementById(panelId);
  if (!panel) return;
  try {
    await work();
    panel.querySelector(".panel-problem")?.remove();
  } catch (problem) {
    if (problem.status === 403) { panel.remove(); return; }
    let note = panel.querySelector(".panel-problem");
    if (!note) {
      note = document.createElement("p");
      note.className = "note panel-problem";
      panel.append(note);
    }
    note.textContent = problem.status === 503 ? "Not available yet: " + problem.message : "Could not load: " + problem.message;
  }
}

// --- the fleet -------------------------------------------------------------------------------

function countCells(row) {
  return [row.devices, row.online, row.offline, row.never_seen, row.revoked].map(n => ({ text: n, css: "num" }));
}

async function loadSummary() {
  const summary = await get("/api/fleet");
  for (const element of document.querySelectorAll("#summary-cards [data-count]")) {
    element.textContent = summary.total[element.dataset.count];
  }
  fill("by-site", summary.by_site, s => [s.site || "(hub)", ...countCells(s)]);
  fill("by-transport", summary.by_transport, t => [t.transport || "(unknown)", ...countCells(t)]);
}

// The fleet a page at a time (/api/devices answers `next`, the cursor of the page after): the
// first page on load, the next only when asked, so 10,000 devices never load or draw at once.
// A refresh reloads as many devices as are shown, from the start, in as few requests as the
// API allows (PAGE_MAX each): every query is audited, so fewer requests mean fewer entries.
const DEVICE_PAGE = 100;
const PAGE_MAX = 1000;
let devicesShown = DEVICE_PAGE;

function devicesPath(after, limit) {
  const asked = new URLSearchParams(new FormData(document.getElementById("device-filters")));
  const params = new URLSearchParams([...asked].filter(([, value]) => value.trim()).map(([k, v]) => [k, v.trim()]));
  params.set("limit", limit);
  if (after) params.set("after", after);
  return "/api/devices?" + params;
}

function deviceCells(d) {
  return [
    { text: d.device_id, href: deviceHref(d.device_id) },
    d.last_seen ? { text: d.presence, css: "dot " + d.presence } : { text: "never seen", css: "dot never_seen" },
    agoCell(d.last_seen),
    { text: d.status, css: d.status },
    d.transport ?? "",
    d.site ?? "",
    tagsText(d.tags),
  ];
}

function showMore(next) {
  const more = document.getElementById("more-devices");
  more.dataset.after = next ?? "";
  more.hidden = !next;
}

async function loadDevices() {
  let devices = [], after = null;
  while (devices.length < devicesShown) {
    const answer = await get(devicesPath(after, Math.min(devicesShown - devices.length, PAGE_MAX)));
    devices = devices.concat(answer.devices);
    after = answer.next;
    if (!after) break;
  }
  showMore(after);
  fill("devices", devices, deviceCells, "No device matches.");
  // When the first page arrived, on the page's clock: tests/projections/test_dashboard_fleet.py reports it.
  if (!document.body.dataset.firstDevicesMs) document.body.dataset.firstDevicesMs = Math.round(performance.now());
}

async function moreDevices() {
  const more = document.getElementById("more-devices");
  await load("devices-panel", async () => {
    const answer = await get(devicesPath(more.dataset.after, DEVICE_PAGE));
    document.querySelector("#devices tbody").append(...answer.devices.map(d => rowOf(d, deviceCells)));
    devicesShown += DEVICE_PAGE;
    showMore(answer.next);
  });
}

async function filterDevices(event) {
  event.preventDefault();
  devicesShown = DEVICE_PAGE;
  await load("devices-panel", loadDevices);
}

function commandCells(c, withDevice) {
  return [
    timeCell(c.issued_at),
    ...(withDevice ? [{ text: c.device_id, href: deviceHref(c.device_id) }] : []),
    c.name,
    ...(withDevice ? [] : [JSON.stringify(c.args)]),
    { text: c.state, css: c.state },
    c.detail ?? "",
    c.actor ?? "",
  ];
}

// A read model's row: "not built yet" until up has built it; red while it is behind or holds parked events.
function lagCells(m) {
  if (!m.built) return [m.name, "not built yet", "", "", ""];
  const positions = Object.entries(m.positions).map(([source, seq]) => source + " at " + seq).join(", ");
  const behind = m.lag_events ? "num behind" : "num";
  return [m.name, positions, { text: m.lag_events, css: behind }, { text: m.lag_seconds.toFixed(1), css: behind },
          { text: m.parked, css: m.parked ? "num behind" : "num" }];
}

// --- campaigns -------------------------------------------------------------------------------

// The parts of a campaign's bar, in this order: how it ended first, then what is under way, then what waits.
const CAMPAIGN_STATES = ["succeeded", "failed", "timed_out", "rejected", "canceled", "removed", "in_progress", "queued", "pending"];
const ENDED = new Set(CAMPAIGN_STATES.slice(0, 6));

// One bar per campaign, a part per state as wide as its share of the targets, its count in its title.
// Widths are set through the style object (CSSOM), which the page's policy allows; inline style attributes it would not.
// `prefix` names the parts' classes apart where two bars share a state's name (a campaign's pending is not an update's).
function progressBar(counts, states = CAMPAIGN_STATES, prefix = "") {
  const total = states.reduce((sum, state) => sum + (counts[state] || 0), 0);
  const bar = document.createElement("div");
  bar.className = "bar";
  for (const state of states) {
    const count = counts[state] || 0;
    if (!count) continue;
    const part = document.createElement("span");
    part.className = "part " + prefix + state;
    part.style.width = (100 * count / total) + "%";
    part.title = `${state.replace("_", " ")}: ${count}`;
    part.dataset.state = state;
    part.dataset.count = count;
    bar.append(part);
  }
  return bar;
}

function campaignCells(c) {
  const counts = c.counts || {};
  const total = CAMPAIGN_STATES.reduce((sum, state) => sum + (counts[state] || 0), 0);
  const ended = CAMPAIGN_STATES.filter(state => ENDED.has(state)).reduce((sum, state) => sum + (counts[state] || 0), 0);
  return [
    { text: c.name, title: c.id },
    { text: c.status, css: "campaign-" + c.status },
    { text: "", node: progressBar(counts), css: "progress" },
    { text: `${ended} of ${total}`, css: "num" },
    { text: c.rule, css: c.rule ? "rule fired" : "rule" },
    timeCell(c.created_at),
    c.created_by,
  ];
}

// --- updates ---------------------------------------------------------------------------------

// Where the fleet is with each artifact: on its latest version, an update under way, failed, or older.
const COMPLIANCE = ["latest", "pending", "failed", "outdated"];

function complianceCells(a) {
  const devices = a.devices || {};
  return [
    a.name,
    a.latest || "(every version removed)",
    { text: "", node: progressBar(devices, COMPLIANCE, "update-"), css: "progress" },
    { text: `${devices.latest || 0} of ${a.total}`, css: "num" },
    { text: devices.pending || 0, css: "num" },
    { text: devices.failed || 0, css: devices.failed ? "num behind" : "num" },
  ];
}

async function refreshFleet() {
  await Promise.all([
    load("summary-panel", loadSummary),
    load("devices-panel", loadDevices),
    load("commands-panel", async () => fill("commands", (await get("/api/commands?limit=20")).commands, c => commandCells(c, true))),
    load("campaigns-panel", async () => fill("campaigns", (await get("/api/campaigns?limit=20")).campaigns, campaignCells)),
    load("updates-panel", async () => fill("updates", (await get("/api/updates/compliance")).artifacts, complianceCells)),
    load("lag-panel", async () => fill("lag", (await get("/api/projections")).read_models, lagCells)),
    load("audit-panel", async () => fill("audit", (await get("/api/audit?limit=20")).entries,
      e => [e.seq, timeCell(e.at), e.actor, e.action, e.target, e.outcome])),
  ]);
}

// --- a device's page -------------------------------------------------------------------------

// The facts shown first, in this order, with their labels; any other field the API answers
// (which fields depend on the caller's role) follows under its own name.
const FACTS = [
  ["status", "status"], ["last_seen", "last seen"], ["transport", "transport"], ["site", "site"],
  ["tags", "tags"], ["enrolled_at", "enrolled"], ["serial", "certificate serial"], ["uptime_s", "uptime (s)"],
  ["outbox", "outbox"], ["software", "software"],
];
const NOT_FACTS = new Set(["device_id", "presence", "shadow", "telemetry", "seq"]);

// "pump-fw 1.9.0 (latest 1.10.0, update to 1.10.0 running)": each artifact the device runs or was sent.
function softwareText(software) {
  return Object.entries(software).map(([name, s]) => {
    const notes = [s.status === "latest" ? "the latest" : `latest ${s.latest ?? "none"}`];
    if (s.update && s.status !== "latest") notes.push(`update to ${s.update.version} ${s.update.state}`);
    return `${name} ${s.version ?? "not installed"} (${notes.join(", ")})`;
  }).join("; ");
}

function factText(key, value) {
  if (key === "tags") return tagsText(value);
  if (key === "software") return softwareText(value);
  if (key === "last_seen") return value ? `${ago(value)} (${when(value)})` : "never";
  if (key.endsWith("_at")) return when(value);
  if (value !== null && typeof value === "object") return JSON.stringify(value);
  return String(value);
}

const empty = value => value === null || value === "" || (typeof value === "object" && Object.keys(value).length === 0);

function showFacts(device) {
  const known = FACTS.filter(([key]) => key in device);
  const rest = Object.keys(device).filter(key => !NOT_FACTS.has(key) && !FACTS.some(([k]) => k === key)).sort();
  const items = [...known, ...rest.map(key => [key, key.replaceAll("_", " ")])]
    .filter(([key]) => key === "last_seen" || !empty(device[key]));
  document.getElementById("device-facts").replaceChildren(...items.flatMap(([key, label]) => {
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = label;
    dd.textContent = factText(key, device[key]);
    dd.dataset.fact = key;
    return [dt, dd];
  }));
}

function keyValueRows(table, values) {
  fill(table, Object.entries(values).sort(), ([key, value]) => [key, JSON.stringify(value)]);
}

async function loadDevice(id) {
  const device = await get("/api/devices/" + encodeURIComponent(id));
  document.getElementById("device-name").textContent = device.device_id;
  const badge = document.getElementById("device-presence");
  badge.textContent = device.presence;
  badge.className = "badge " + device.presence;
  showFacts(device);
  const shadow = device.shadow;
  if (shadow && document.getElementById("shadow-panel")) {
    keyValueRows("shadow-desired", shadow.desired);
    keyValueRows("shadow-reported", shadow.reported);
    keyValueRows("shadow-delta", shadow.delta);
    document.getElementById("shadow-version").textContent =
      (shadow.version ? `desired version ${shadow.version}` : "no desired state set") +
      `; reported ${shadow.reported_at ? ago(shadow.reported_at) : "never"}`;
  }
}

async function loadCharts(id) {
  const answer = await get("/api/devices/" + encodeURIComponent(id) + "/telemetry");
  const metrics = Object.entries(answer.metrics);
  document.getElementById("charts").replaceChildren(...metrics.map(([metric, points]) => lineChart(metric, points)));
  document.getElementById("charts-none").hidden = metrics.length > 0;
}

async function loadHistory(id) {
  const answer = await get("/api/commands?limit=50&device=" + encodeURIComponent(id));
  fill("device-commands", answer.commands, c => commandCells(c, false));
}

async function sendCommand(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const outcome = document.getElementById("send-outcome");
  outcome.className = "note";
  let args;
  try {
    args = JSON.parse(form.get("args") || "{}");
    if (args === null || typeof args !== "object" || Array.isArray(args)) throw new Error();
  } catch {
    outcome.className = "note refused";
    outcome.textContent = 'The arguments must be a JSON object, such as {"key": "value"}.';
    return;
  }
  const body = { name: form.get("name").trim(), args, ttl_s: Number(form.get("ttl_s")), timeout_s: Number(form.get("timeout_s")) };
  try {
    const sent = await call("/api/devices/" + encodeURIComponent(currentDevice()) + "/commands", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    outcome.textContent = `Sent ${body.name}: command ${sent.command_id}.`;
    outcome.dataset.commandId = sent.command_id;
    await load("history-panel", () => loadHistory(currentDevice()));
  } catch (problem) {
    outcome.className = "note refused";
    outcome.textContent = "Not sent: " + problem.message;
  }
}

async function refreshDevice(id) {
  await Promise.all([
    load("device-panel", () => loadDevice(id)),
    load("chart-panel", () => loadCharts(id)),
    load("history-panel", () => loadHistory(id)),
  ]);
}

// --- which view ------------------------------------------------------------------------------

const currentDevice = () => new URLSearchParams(location.hash.slice(1)).get("device");

async function refresh() {
  const device = currentDevice();
  document.getElementById("fleet-view").hidden = Boolean(device);
  document.getElementById("device-view").hidden = !device;
  document.body.dataset.view = device ? "device" : "fleet";
  await (device ? refreshDevice(device) : refreshFleet());
  document.body.dataset.loaded = "yes";
}

async function start() {
  try {
    await keepPermittedPanels();
  } catch (problem) {
    const shown = document.getElementById("problem");
    shown.hidden = false;
    shown.textContent = problem.status === 401 ? "Sign in: " + problem.message : "The mesh cannot be asked now: " + problem.message;
    for (const view of document.querySelectorAll("main")) view.hidden = true;  // no panel without a caller
    document.body.dataset.loaded = "yes";
    return;
  }
  document.getElementById("device-filters")?.addEventListener("submit", filterDevices);
  document.getElementById("more-devices")?.addEventListener("click", moreDevices);
  document.getElementById("send-command")?.addEventListener("submit", sendCommand);
  addEventListener("hashchange", () => { document.body.dataset.loaded = ""; refresh(); });
  await refresh();
  setInterval(refresh, REFRESH_MS);
}

start();
