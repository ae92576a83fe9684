// SPDX-License-Identifier: Apache-2.0
// kbridge dashboard (docs/operations.md "Dashboard"): polls the admin API
// (same origin, the browser's HTTP basic credentials) and /metrics every few
// seconds and renders the overview, queues with a depth sparkline each,
// connections and the dead-letter browser. Plain JavaScript, no library.
"use strict";

const HISTORY = 60; // depths kept per queue for its sparkline
const RATE_COUNTERS = {
  published: "kbridge_destination_published_total",
  delivered: "kbridge_destination_delivered_total",
  acked: "kbridge_destination_acked_total",
  dead_lettered: "kbridge_destination_dead_lettered_total",
};

const state = {
  timer: null,
  intervalMs: 2000,
  polls: 0,
  counters: null, // {at, values: {published: n, ...}} from the previous poll
  queues: new Map(), // "vhost\0name" -> {depths: [], ends: {at, total}, inRate}
  dlqOpen: null, // {vhost, name} whose dead letters are shown
  user: null,
  role: null, // kbridge_role of /api/whoami: only "administrator" may redrive
};

function $(id) { return document.getElementById(id); }

async function api(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin", cache: "no-store" }, options || {}));
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = text; }
  if (!response.ok) {
    const reason = body && body.reason ? body.reason : response.status + " " + response.statusText;
    const error = new Error(path + ": " + reason);
    error.status = response.status;
    throw error;
  }
  return body;
}

// Sum of every series of each rate counter in Prometheus text.
function parseCounters(text) {
  const values = {};
  for (const key of Object.keys(RATE_COUNTERS)) values[key] = 0;
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const name = line.split(/[{ ]/, 1)[0];
    for (const [key, metric] of Object.entries(RATE_COUNTERS)) {
      if (name === metric) values[key] += Number(line.slice(line.lastIndexOf(" ") + 1)) || 0;
    }
  }
  return values;
}

function setField(root, field, text) {
  const el = root.querySelector('[data-field="' + field + '"]');
  if (el) el.textContent = text;
}

function formatUptime(seconds) {
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + (s % 60) + "s";
}

function formatRate(value) {
  return value === null || value === undefined ? "–" : value.toFixed(value < 10 ? 1 : 0);
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (className) td.className = className;
  return td;
}

function numberCell(field, value) {
  const td = cell(value, "num");
  td.dataset.field = field;
  return td;
}

// A sparkline: the depths polled (oldest left, newest at the right edge) as
// a line over a filled area, scaled to their maximum; a dot marks the newest.
function sparkline(values) {
  const ns = "http://www.w3.org/2000/svg";
  const width = 120, height = 24;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  const max = Math.max(1, ...values);
  const step = width / (HISTORY - 1);
  const x = (i) => (width - 3 - step * (values.length - 1 - i)).toFixed(1);
  const y = (v) => (height - 2 - (v / max) * (height - 5)).toFixed(1);
  const points = values.map((v, i) => x(i) + "," + y(v));
  if (values.length > 0) {
    const area = document.createElementNS(ns, "polygon");
    area.setAttribute("points", [x(0) + "," + (height - 1), ...points,
      x(values.length - 1) + "," + (height - 1)].join(" "));
    svg.appendChild(area);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", points.join(" "));
    svg.appendChild(line);
    const dot = document.createElementNS(ns, "circle");
    dot.setAttribute("cx", x(values.length - 1));
    dot.setAttribute("cy", y(values[values.length - 1]));
    dot.setAttribute("r", "2");
    svg.appendChild(dot);
  }
  const title = document.createElementNS(ns, "title");
  title.textContent = "depth over the last " + values.length + " polls, max " + max;
  svg.appendChild(title);
  return svg;
}

function renderOverview(overview, counters, now) {
  const root = $("overview");
  const k = overview.kbridge || {};
  setField(root, "node", overview.node);
  setField(root, "version", overview.product_version);
  setField(root, "uptime", k.uptime_seconds !== undefined ? formatUptime(k.uptime_seconds) : "–");
  const kafka = k.kafka || {};
  const kafkaEl = root.querySelector('[data-field="kafka"]');
  kafkaEl.textContent = (kafka.bootstrap || "?") + (kafka.ready ? " — ready" : " — not ready: " + (kafka.reason || ""));
  kafkaEl.className = kafka.ready ? "ok" : "bad";
  const defs = k.definitions || {};
  setField(root, "definitions", (defs.topic || "?") + (defs.ready ? " — read" : " — reading"));
  setField(root, "user", state.user || "–");
  const totals = overview.object_totals || {};
  for (const field of ["connections", "consumers", "queues", "exchanges"]) setField(root, field, totals[field]);
  if (counters) {
    const previous = state.counters;
    for (const key of Object.keys(RATE_COUNTERS)) {
      const el = root.querySelector('[data-rate="' + key + '"]');
      if (previous && now > previous.at) {
        const rate = Math.max(0, counters[key] - previous.values[key]) / ((now - previous.at) / 1000);
        el.textContent = formatRate(rate);
      }
      el.dataset.total = counters[key];
    }
    state.counters = { at: now, values: counters };
  }
}

function queueKey(q) { return q.vhost + "\u0000" + q.name; }

function renderQueues(queues, now) {
  const body = $("queue-rows");
  const rows = [];
  const seen = new Set();
  for (const q of queues) {
    const key = queueKey(q);
    seen.add(key);
    let entry = state.queues.get(key);
    if (!entry) { entry = { depths: [], ends: null, inRate: null }; state.queues.set(key, entry); }
    if (typeof q.messages === "number") {
      entry.depths.push(q.messages);
      if (entry.depths.length > HISTORY) entry.depths.shift();
    }
    if (Array.isArray(q.kbridge_partitions)) {
      const total = q.kbridge_partitions.reduce((sum, p) => sum + (p.end || 0), 0);
      if (entry.ends && now > entry.ends.at)
        entry.inRate = Math.max(0, total - entry.ends.total) / ((now - entry.ends.at) / 1000);
      entry.ends = { at: now, total: total };
    }
    const tr = document.createElement("tr");
    tr.dataset.vhost = q.vhost;
    tr.dataset.queue = q.name;
    tr.appendChild(cell(q.vhost));
    const name = cell(q.name);
    name.dataset.field = "name";
    tr.appendChild(name);
    const depth = numberCell("messages", typeof q.messages === "number" ? q.messages : null);
    if (q.kbridge_depth_error) { depth.title = q.kbridge_depth_error; depth.classList.add("bad"); }
    tr.appendChild(depth);
    const spark = document.createElement("td");
    spark.appendChild(sparkline(entry.depths));
    tr.appendChild(spark);
    tr.appendChild(numberCell("in_rate", entry.inRate === null ? null : formatRate(entry.inRate)));
    tr.appendChild(numberCell("consumers", q.consumers));
    tr.appendChild(numberCell("in_flight", "messages_unacknowledged" in q ? q.messages_unacknowledged : null));
    tr.appendChild(numberCell("dlq_messages", "kbridge_dlq_messages" in q ? q.kbridge_dlq_messages : null));
    const topic = cell("kbridge_dlq_topic" in q ? q.kbridge_dlq_topic : null);
    topic.dataset.field = "dlq_topic";
    tr.appendChild(topic);
    rows.push(tr);
  }
  for (const key of [...state.queues.keys()]) if (!seen.has(key)) state.queues.delete(key);
  body.replaceChildren(...rows);
  $("queues-empty").hidden = rows.length > 0;
}

function renderConnections(connections) {
  const rows = connections.map((c) => {
    const tr = document.createElement("tr");
    tr.dataset.connection = c.name;
    tr.appendChild(cell(c.name));
    tr.appendChild(cell(c.node)); // every node's connections: the cluster view (status topic)
    tr.appendChild(cell(c.protocol));
    tr.appendChild(cell(c.user));
    tr.appendChild(cell(c.peer_host + ":" + c.peer_port));
    tr.appendChild(cell(c.client_id));
    tr.appendChild(cell(c.connected_at ? new Date(c.connected_at).toLocaleString() : null));
    const k = c.kbridge || {};
    tr.appendChild(numberCell("subscriptions", k.subscriptions));
    tr.appendChild(numberCell("unconfirmed", k.unconfirmed));
    return tr;
  });
  $("connection-rows").replaceChildren(...rows);
  $("connections-empty").hidden = rows.length > 0;
}

function dlqPath(vhost, name, rest) {
  return "/api/kbridge/dlq/" + encodeURIComponent(vhost) + "/" + encodeURIComponent(name) + rest;
}

async function peek(vhost, name) {
  state.dlqOpen = { vhost: vhost, name: name };
  $("dlq-detail").hidden = false;
  $("dlq-detail-queue").textContent = name;
  const letters = await api(dlqPath(vhost, name, "/messages?count=20"));
  const rows = (letters || []).map((m) => {
    const headers = (m.properties && m.properties.headers) || {};
    const tr = document.createElement("tr");
    tr.appendChild(cell(m.partition, "num"));
    tr.appendChild(cell(m.offset, "num"));
    tr.appendChild(cell(headers["kbridge-dlq-reason"]));
    tr.appendChild(cell(headers["kbridge-dlq-original-topic"]));
    const payload = String(m.payload === undefined ? "" : m.payload);
    tr.appendChild(cell((m.payload_encoding === "base64" ? "(base64) " : "") +
      (payload.length > 200 ? payload.slice(0, 200) + "…" : payload), "payload"));
    return tr;
  });
  $("dlq-messages").replaceChildren(...rows);
}

async function redrive(vhost, name, button) {
  button.disabled = true;
  const result = $("dlq-result");
  result.className = "result";
  result.textContent = "redriving the dead letters of " + name + "…";
  try {
    const answer = await api(dlqPath(vhost, name, "/redrive"), {
      method: "POST", headers: { "Content-Type": "application/json" }, body: "{}",
    });
    result.textContent = "redriven " + answer.redriven + " of " + name + "'s dead letters" +
      (answer.destination ? " to " + answer.destination : " to their original topics");
    result.dataset.redriven = answer.redriven;
    result.classList.add("ok");
  } catch (error) {
    result.textContent = "redrive failed: " + error.message;
    result.classList.add("bad");
  } finally {
    button.disabled = false;
  }
  await refresh();
  if (state.dlqOpen) await peek(state.dlqOpen.vhost, state.dlqOpen.name).catch(() => {});
}

function renderDeadLetters(queues) {
  const rows = [];
  for (const q of queues) {
    if (!("kbridge_dlq_topic" in q)) continue;
    const open = state.dlqOpen && state.dlqOpen.vhost === q.vhost && state.dlqOpen.name === q.name;
    if (!(q.kbridge_dlq_messages > 0) && !open) continue;
    const tr = document.createElement("tr");
    tr.dataset.vhost = q.vhost;
    tr.dataset.queue = q.name;
    tr.appendChild(cell(q.vhost));
    tr.appendChild(cell(q.name));
    tr.appendChild(cell(q.kbridge_dlq_topic));
    tr.appendChild(numberCell("dlq_messages", q.kbridge_dlq_messages));
    const actions = document.createElement("td");
    const peekButton = document.createElement("button");
    peekButton.textContent = "Peek";
    peekButton.dataset.action = "peek";
    peekButton.addEventListener("click", () => peek(q.vhost, q.name).catch(showError));
    const redriveButton = document.createElement("button");
    redriveButton.textContent = "Redrive";
    redriveButton.dataset.action = "redrive";
    redriveButton.addEventListener("click", () => redrive(q.vhost, q.name, redriveButton));
    if (state.role !== "administrator") {
      redriveButton.disabled = true;
      redriveButton.title = "redrive takes the administrator tag";
    }
    actions.append(peekButton, redriveButton);
    tr.appendChild(actions);
    rows.push(tr);
  }
  $("dlq-rows").replaceChildren(...rows);
  $("dlq-empty").hidden = rows.length > 0;
}

function showError(error) {
  const status = $("status");
  status.textContent = error.message;
  status.className = "status error";
}

async function refresh() {
  try {
    if (!state.user) {
      const whoami = await api("/api/whoami");
      state.user = whoami.name;
      state.role = whoami.kbridge_role;
    }
    const metrics = fetch("/metrics", { cache: "no-store" })
      .then((r) => (r.ok ? r.text() : null)).catch(() => null);
    const [overview, queues, connections, metricsText] = await Promise.all([
      api("/api/overview"), api("/api/queues"), api("/api/connections"), metrics]);
    const now = performance.now();
    renderOverview(overview, metricsText === null ? null : parseCounters(metricsText), now);
    renderQueues(queues, now);
    renderConnections(connections);
    renderDeadLetters(queues);
    state.polls++;
    document.body.dataset.polls = state.polls;
    const status = $("status");
    status.textContent = "updated " + new Date().toLocaleTimeString();
    status.className = "status";
  } catch (error) {
    showError(error);
  }
}

function schedule() {
  if (state.timer) clearTimeout(state.timer);
  state.timer = null;
  if (state.intervalMs > 0)
    state.timer = setTimeout(async () => { await refresh(); schedule(); }, state.intervalMs);
}

function start() {
  const select = $("refresh");
  const asked = new URLSearchParams(location.search).get("refresh") || localStorage.getItem("kbridge.refresh");
  if (asked !== null && [...select.options].some((o) => o.value === asked)) select.value = asked;
  state.intervalMs = Number(select.value) * 1000;
  select.addEventListener("change", () => {
    state.intervalMs = Number(select.value) * 1000;
    localStorage.setItem("kbridge.refresh", select.value);
    schedule();
  });
  refresh().then(schedule);
}

document.addEventListener("DOMContentLoaded", start);
