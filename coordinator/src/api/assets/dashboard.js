// Weir's dashboard: polls the coordinator's REST API once a second and
// draws the jobs, a job's graph with per-operator rates and back-pressure,
// its checkpoint history (chart and table), its restarts, and the workers.
// No build step and no dependencies: served as is by the coordinator.
"use strict";

const REFRESH_MS = 1000;
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS(SVG, tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function get(path) {
  const response = await fetch(path, { credentials: "same-origin" });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new Error(`${path}: ${message}`);
  }
  return response.json();
}

function bytes(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function duration(seconds) {
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${Math.floor(seconds % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function rate(n) {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M/s`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k/s`;
  return `${n.toFixed(0)}/s`;
}

function time(ms) {
  return new Date(ms).toISOString().replace("T", " ").slice(0, 23);
}

function setRows(table, rows) {
  const body = document.querySelector(`#${table} tbody`);
  body.replaceChildren(...rows);
}

function stateBadge(state) {
  return el("span", { class: `state ${state}`, text: state });
}

function jobLink(job) {
  return el("a", { href: `#/jobs/${encodeURIComponent(job.job_id)}`, text: job.job_id });
}

async function drawOverview() {
  const [jobs, cluster] = await Promise.all([get("/v1/jobs"), get("/v1/cluster")]);
  setRows("jobs", jobs.map((job) => {
    const row = el("tr", { "data-testid": "job-row", "data-job": job.job_id });
    row.append(
      el("td", { text: job.number }), el("td", {}, jobLink(job)), el("td", { text: job.job }),
      el("td", {}, stateBadge(job.state)), el("td", { text: duration(job.elapsed_s) }),
      el("td", { text: job.attempt }), el("td", { text: job.running_parallelism || job.parallelism }),
      el("td", { text: job.restarts }), el("td", { text: job.checkpoints_completed }));
    return row;
  }));
  const live = cluster.workers.map((w) => {
    const state = w.used > 0 ? "running" : "idle";
    return el("tr", { "data-testid": "worker-row" },
      el("td", { text: w.id }), el("td", { text: w.name }), el("td", {}, el("span", { class: `state ${state}`, text: state })),
      el("td", { text: `${w.used} / ${w.slots}` }),
      el("td", { text: w.heartbeat_age_ms === null || w.heartbeat_age_ms === undefined ? "-" : `${w.heartbeat_age_ms} ms` }),
      el("td", { text: w.data_addr }), el("td", { text: w.metrics_addr || "-" }));
  });
  const lost = (cluster.lost || []).map((w) => el("tr", { "data-testid": "worker-row" },
    el("td", { text: w.id }), el("td", { text: w.name }), el("td", {}, el("span", { class: "state lost", text: "lost" })),
    el("td", { text: "-" }), el("td", { text: `lost at ${time(w.lost_at_ms)}` }),
    el("td", { text: w.cause, colspan: 2 })));
  setRows("workers", [...live, ...lost]);
}

/// Layers by longest path from a source, for a left-to-right layout.
function layers(graph) {
  const layer = new Map(graph.vertices.map((v) => [v.id, 0]));
  for (let pass = 0; pass < graph.vertices.length; pass++) {
    for (const e of graph.edges) layer.set(e.to, Math.max(layer.get(e.to), layer.get(e.from) + 1));
  }
  return layer;
}

function drawGraph(graph) {
  const svg = document.getElementById("graph");
  const layer = layers(graph);
  const columns = Math.max(...layer.values()) + 1;
  const perColumn = new Map();
  const position = new Map();
  const width = Math.max(svg.clientWidth, 600);
  const boxW = 190, boxH = 92, gapY = 24;
  const columnW = Math.max(boxW + 40, width / columns);
  for (const v of graph.vertices) {
    const col = layer.get(v.id);
    const row = perColumn.get(col) || 0;
    perColumn.set(col, row + 1);
    position.set(v.id, { x: 10 + col * columnW, y: 10 + row * (boxH + gapY) });
  }
  const rows = Math.max(...perColumn.values());
  svg.setAttribute("viewBox", `0 0 ${width} ${20 + rows * (boxH + gapY)}`);
  svg.style.height = `${20 + rows * (boxH + gapY)}px`;
  const defs = el("svg:defs", {}, el("svg:marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto" },
    el("svg:path", { d: "M0,0 L10,5 L0,10 z", fill: "#8a96a6" })));
  const nodes = [defs];
  for (const e of graph.edges) {
    const a = position.get(e.from), b = position.get(e.to);
    const x1 = a.x + boxW, y1 = a.y + boxH / 2, x2 = b.x, y2 = b.y + boxH / 2;
    nodes.push(el("svg:path", { class: "edge", d: `M${x1},${y1} C${x1 + 30},${y1} ${x2 - 30},${y2} ${x2},${y2}` }));
    nodes.push(el("svg:text", { class: "edge-label", x: (x1 + x2) / 2 - 20, y: (y1 + y2) / 2 - 4, text: e.partitioning }));
  }
  for (const v of graph.vertices) {
    const { x, y } = position.get(v.id);
    const bp = v.backpressured_ratio || 0, busy = v.busy_ratio || 0;
    const stroke = bp > 0.5 ? "#c23b3b" : bp > 0.1 ? "#d9822b" : "#2f6fb0";
    const group = el("svg:g", { class: "vertex", "data-testid": "vertex", "data-name": v.name, transform: `translate(${x},${y})` });
    group.append(
      el("svg:rect", { width: boxW, height: boxH, style: `stroke:${stroke}` }),
      el("svg:text", { class: "name", x: 8, y: 17, text: `${v.name} ×${v.parallelism}` }),
      el("svg:text", { x: 8, y: 34, text: `in ${rate(v.records_in_per_s || 0)}  out ${rate(v.records_out_per_s || 0)}` }),
      el("svg:text", { x: 8, y: 51, text: `busy ${(busy * 100).toFixed(0)}%  back-pressured ${(bp * 100).toFixed(0)}%` }),
      el("svg:rect", { class: "bar-bg", x: 8, y: 60, width: boxW - 16, height: 6 }),
      el("svg:rect", { x: 8, y: 60, width: (boxW - 16) * Math.min(busy, 1), height: 6, fill: "#2f6fb0" }),
      el("svg:rect", { x: 8 + (boxW - 16) * Math.min(busy, 1), y: 60, width: (boxW - 16) * Math.min(bp, 1), height: 6, fill: "#c23b3b" }),
      el("svg:text", { x: 8, y: 84, class: "edge-label", text: `${v.kind} · ${v.reporting_subtasks}/${v.parallelism} reporting` }));
    nodes.push(group);
  }
  svg.replaceChildren(...nodes);
}

function drawChart(checkpoints) {
  const svg = document.getElementById("checkpoint-chart");
  const points = checkpoints.slice().reverse();
  const width = Math.max(svg.clientWidth, 600), height = 200, left = 50, right = 70, top = 10, bottom = 24;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const nodes = [
    el("svg:line", { class: "axis", x1: left, y1: height - bottom, x2: width - right, y2: height - bottom }),
    el("svg:line", { class: "axis", x1: left, y1: top, x2: left, y2: height - bottom }),
    el("svg:line", { class: "axis", x1: width - right, y1: top, x2: width - right, y2: height - bottom }),
  ];
  if (points.length > 0) {
    const maxDuration = Math.max(1, ...points.map((p) => p.duration_ms));
    const maxSize = Math.max(1, ...points.map((p) => p.size_bytes || 0));
    const x = (i) => left + (points.length === 1 ? 0.5 : i / (points.length - 1)) * (width - left - right);
    const yd = (ms) => height - bottom - (ms / maxDuration) * (height - top - bottom);
    const ys = (b) => height - bottom - (b / maxSize) * (height - top - bottom);
    const completed = points.map((p, i) => [p, i]).filter(([p]) => p.outcome === "completed");
    nodes.push(el("svg:polyline", { class: "duration-line", points: completed.map(([p, i]) => `${x(i)},${yd(p.duration_ms)}`).join(" ") }));
    nodes.push(el("svg:polyline", { class: "size-line", points: completed.map(([p, i]) => `${x(i)},${ys(p.size_bytes || 0)}`).join(" ") }));
    points.forEach((p, i) => {
      const aborted = p.outcome !== "completed";
      nodes.push(el("svg:circle", { class: `point duration${aborted ? " aborted" : ""}`, "data-testid": "checkpoint-point", "data-epoch": p.epoch, cx: x(i), cy: yd(p.duration_ms), r: 3 },
        el("svg:title", { text: `checkpoint ${p.epoch}: ${p.outcome}, ${p.duration_ms.toFixed(1)} ms, ${bytes(p.size_bytes)}` })));
      if (!aborted) nodes.push(el("svg:circle", { class: "point size", cx: x(i), cy: ys(p.size_bytes || 0), r: 2.5 }));
    });
    nodes.push(el("svg:text", { class: "axis-label", x: 4, y: top + 8, text: `${maxDuration.toFixed(0)} ms` }));
    nodes.push(el("svg:text", { class: "axis-label", x: width - right + 4, y: top + 8, text: bytes(maxSize) }));
    nodes.push(el("svg:text", { class: "axis-label", x: left, y: height - 6, text: `epoch ${points[0].epoch}` }));
    nodes.push(el("svg:text", { class: "axis-label", x: width - right - 60, y: height - 6, text: `epoch ${points[points.length - 1].epoch}` }));
  }
  svg.replaceChildren(...nodes);
}

function drawCheckpoints(history) {
  drawChart(history.checkpoints);
  setRows("checkpoints", history.checkpoints.slice(0, 20).map((c) => {
    const slowest = c.subtasks.length ? Math.max(...c.subtasks.map((s) => s.acked_after_ms)) : null;
    const alignment = c.subtasks.length ? Math.max(...c.subtasks.map((s) => s.alignment_ms)) : null;
    return el("tr", { "data-testid": "checkpoint-row" },
      el("td", { text: c.epoch }), el("td", { text: c.outcome + (c.is_final ? " (final)" : "") }),
      el("td", { text: time(c.triggered_at_ms) }), el("td", { text: `${c.duration_ms.toFixed(1)} ms` }),
      el("td", { text: bytes(c.size_bytes) }), el("td", { text: bytes(c.incremental_size_bytes) }),
      el("td", { text: slowest === null ? "-" : `${slowest.toFixed(1)} ms` }),
      el("td", { text: alignment === null ? "-" : `${alignment.toFixed(2)} ms` }),
      el("td", { text: c.cause || "-" }));
  }));
}

function drawRestarts(exceptions, graph) {
  const names = new Map(graph.vertices.map((v) => [v.id, v.name]));
  setRows("restarts", exceptions.exceptions.map((r) => {
    const tiers = el("td");
    for (const s of r.restored) {
      tiers.append(el("span", { class: `tier ${s.tier}`, title: `${s.duration_ms} ms`, text: `${names.get(s.vertex) || s.vertex}/${s.subtask}: ${s.tier.replace("_", " ")}` }));
    }
    if (!r.restored.length) tiers.textContent = "-";
    return el("tr", { "data-testid": "restart-row" },
      el("td", { text: time(r.detected_at_ms) }),
      el("td", { text: r.scope === "regional" ? `regions ${r.regions.join(", ")}` : "global" }),
      el("td", { text: r.attempt }),
      el("td", { text: r.superseded ? "restarted again" : r.recovery_ms === null || r.recovery_ms === undefined ? "recovering…" : `${r.recovery_ms.toFixed(0)} ms` }),
      tiers, el("td", { text: r.cause }));
  }));
}

async function drawJob(id) {
  const path = `/v1/jobs/${encodeURIComponent(id)}`;
  const [status, graph, history, exceptions] = await Promise.all([
    get(path), get(`${path}/graph`), get(`${path}/checkpoints?limit=60`), get(`${path}/exceptions`)]);
  document.getElementById("job-title").textContent = `${status.job_id} (${status.job})`;
  document.getElementById("job-state").replaceWith(Object.assign(stateBadge(status.state), { id: "job-state" }));
  document.getElementById("job-facts").textContent =
    `attempt ${status.attempt} · parallelism ${status.running_parallelism || status.parallelism} · up ${duration(status.elapsed_s)} · ` +
    `${status.restarts} restart(s) · ${status.checkpoints_completed} checkpoints completed, ${status.checkpoints_aborted} aborted`;
  drawGraph(graph);
  drawCheckpoints(history);
  drawRestarts(exceptions, graph);
}

async function refresh() {
  const route = location.hash.match(/^#\/jobs\/(.+)$/);
  document.getElementById("overview").hidden = !!route;
  document.getElementById("job").hidden = !route;
  const error = document.getElementById("error");
  try {
    if (route) await drawJob(decodeURIComponent(route[1]));
    else await drawOverview();
    error.hidden = true;
    document.getElementById("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (problem) {
    error.hidden = false;
    error.textContent = problem.message;
  }
}

async function leader() {
  try {
    const answer = await get("/v1/leader");
    document.getElementById("leader").textContent =
      answer.leading ? `leader ${answer.this.api} (term since ${time(answer.leading_since_ms)})` : `standby of ${answer.leader ? answer.leader.address.api : "no known leader"}`;
  } catch (_) { /* shown by refresh */ }
}

// The next refresh is due a second after this one ended: a slow leader
// never has requests pile up, nor answers drawn out of order.
async function refreshForever() {
  await refresh();
  setTimeout(refreshForever, REFRESH_MS);
}

window.addEventListener("hashchange", refresh);
leader();
refreshForever();
