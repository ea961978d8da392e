// facecast dashboard: one EventSource (/events) carrying a snapshot, then changes per device.
// Plain JS on purpose: no build step, nothing to vendor. Text goes in through textContent only.
// The server reads every payload before it gets here (agent/dashboard/payloads.py), and each
// message is applied on its own: one that still fails is counted and skipped, never fatal.
"use strict";

const EMOTIONS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"];
const COLORS = {
  angry: "#d64541", disgust: "#7d9a2e", fear: "#8e44ad", happy: "#f1b82d",
  neutral: "#95a5a6", sad: "#3a78c3", surprise: "#e67e22",
};
const devices = new Map(); // device_id -> {state, el}
let timelineMs = 300000;
let clockSkewMs = 0; // server time - browser time
let skipped = { server: 0, page: 0 };

function el(sel, root) { return root.querySelector(sel); }
function serverNow() { return Date.now() + clockSkewMs; }

function deviceView(id) {
  let d = devices.get(id);
  if (d) return d;
  const node = document.getElementById("device-tpl").content.firstElementChild.cloneNode(true);
  node.dataset.device = id;
  el(".name", node).textContent = id;
  const legend = el(".legend", node);
  for (const e of EMOTIONS) {
    const span = document.createElement("span");
    const sw = document.createElement("i");
    sw.style.background = COLORS[e];
    span.append(sw, e);
    legend.append(span);
  }
  el(".dismiss", node).addEventListener("click", () => dismiss(id));
  document.getElementById("devices").append(node);
  document.getElementById("empty").hidden = true;
  d = { el: node, state: { timeline: [], blocks: [] } };
  devices.set(id, d);
  return d;
}

function forget(id) {
  const d = devices.get(id);
  if (!d) return;
  d.el.remove();
  devices.delete(id);
  document.getElementById("empty").hidden = devices.size > 0;
}

function dismiss(id) {
  forget(id); // at once here; the server tells every other page
  fetch("api/dismiss", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ device: id }),
  }).catch(() => {});
}

function ago(seconds) {
  if (seconds < 90) return `${Math.max(0, Math.round(seconds))} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

function renderStatus(d) {
  const status = d.state.status || "unknown";
  const online = status === "online";
  const pill = el(".status", d.el);
  pill.textContent = online ? "online"
    : status === "stopped" ? "offline (stopped)"
    : status === "offline" ? "offline (connection lost)" : status;
  pill.className = "pill status " + (online ? "on" : "off");
  d.el.dataset.status = online ? "online" : "offline";
  d.el.classList.toggle("offline", !online);
  el(".dismiss", d.el).hidden = online;
  const seen = el(".last-seen", d.el);
  if (online || !d.state.last_seen) {
    seen.textContent = online ? "" : "last seen: never";
  } else {
    const when = new Date(d.state.last_seen * 1000);
    seen.textContent = `last seen ${when.toLocaleString()} (${ago(serverNow() / 1000 - d.state.last_seen)})`;
  }
}

function renderPresence(d) {
  const p = d.state.presence;
  const list = el(".faces", d.el);
  list.replaceChildren();
  if (!p) return;
  el(".faces-n", d.el).textContent = String(p.faces);
  el(".dominant", d.el).textContent = p.dominant_emotion || "–";
  for (const t of p.tracks) {
    const li = document.createElement("li");
    li.className = "face";
    li.dataset.track = String(t.id);
    const emo = document.createElement("span");
    emo.className = "emo";
    emo.textContent = t.emotion;
    emo.style.color = COLORS[t.emotion] || "inherit";
    const rest = document.createElement("span");
    rest.className = "gender";
    rest.textContent = t.gender ? ` ${t.gender} · #${t.id}` : ` #${t.id}`;
    li.append(emo, rest);
    list.append(li);
  }
}

function renderStats(d) {
  const s = d.state.stats;
  if (!s) return;
  el(".fps", d.el).textContent = s.fps.toFixed(1);
  // processing time per frame; "decode" is left out: on a paced camera it is mostly waiting
  const total = Object.values(s.latency_ms).reduce((a, b) => a + b, 0);
  el(".latency", d.el).textContent = total ? `${total.toFixed(1)} ms` : "–";
  el(".buffer", d.el).textContent = String(s.buffer_depth);
}

function renderEvent(d) {
  const e = d.state.last_event;
  if (!e) return;
  el(".last-event", d.el).textContent =
    `last: ${e.type} #${e.id} ${e.emotion} (mostly ${e.dominant})` +
    `${e.gender ? ", " + e.gender : ""}, ${e.frames} frames`;
}

function renderSummary(d) {
  const s = d.state.summary;
  if (!s) return;
  const end = new Date(s.end * 1000).toLocaleTimeString();
  el(".summary", d.el).textContent =
    `${s.people === null ? "fewer people than the minimum group" : s.people === 1 ? "1 person" : s.people + " people"}` +
    ` in the window to ${end}`;
}

function drawTimeline(d) {
  const canvas = el(".timeline", d.el);
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const now = serverNow();
  const start = now - timelineMs;
  const points = d.state.timeline;
  // summary windows fill what presence does not cover: before its first point, or all of it
  const firstPoint = points.length ? points[0][0] : Infinity;
  const segments = [];
  for (const [t0, t1, counts] of d.state.blocks) {
    if (t0 < firstPoint) segments.push([t0, Math.min(t1, firstPoint), counts]);
  }
  for (let i = 0; i < points.length; i++) {
    segments.push([points[i][0], i + 1 < points.length ? points[i + 1][0] : now, points[i][1]]);
  }
  const total = (c) => Object.values(c).reduce((a, b) => a + b, 0);
  const maxFaces = Math.max(1, ...segments.map(([, , c]) => total(c)));
  const x = (t) => ((t - start) / timelineMs) * w;
  for (const [t0, t1, counts] of segments) {
    if (t1 < start) continue;
    const x0 = Math.max(0, x(t0)), x1 = Math.max(x0 + 1, x(t1));
    let y = h;
    for (const e of EMOTIONS) {
      const n = counts[e] || 0;
      if (!n) continue;
      const bh = (n / maxFaces) * (h - 4);
      ctx.fillStyle = COLORS[e];
      ctx.fillRect(x0, y - bh, x1 - x0, bh);
      y -= bh;
    }
  }
  ctx.fillStyle = "#778";
  ctx.font = "10px sans-serif";
  ctx.fillText(`-${Math.round(timelineMs / 60000)} min`, 2, 10);
  ctx.fillText("now", w - 22, 10);
}

function trim(s) {
  const cutoff = serverNow() - timelineMs;
  while (s.timeline.length > 1 && s.timeline[1][0] < cutoff) s.timeline.shift();
  s.blocks = s.blocks.filter(([, t1]) => t1 >= cutoff);
}

function apply(d, msg) {
  const s = d.state;
  if (msg.last_seen) s.last_seen = msg.last_seen;
  switch (msg.type) {
    case "status": s.status = msg.payload.status; break;
    case "presence":
      s.presence = msg.payload;
      if (msg.timeline_point) {
        s.timeline.push([msg.timeline_point[0] * 1000, msg.timeline_point[1]]);
        s.timeline.sort((a, b) => a[0] - b[0]);
      }
      renderPresence(d); break;
    case "stats": s.stats = msg.payload; renderStats(d); break;
    case "events": s.last_event = msg.payload; renderEvent(d); break;
    case "summary":
      s.summary = msg.payload;
      if (msg.timeline_block) {
        const [t0, t1, c] = msg.timeline_block;
        s.blocks.push([t0 * 1000, t1 * 1000, c]);
      }
      renderSummary(d); break;
    default: break;
  }
  renderStatus(d);
  trim(s);
  drawTimeline(d);
}

function snapshot(msg) {
  timelineMs = (msg.timeline_s || 300) * 1000;
  clockSkewMs = msg.now * 1000 - Date.now();
  setBroker(msg.broker);
  skipped.server = msg.malformed || 0;
  showSkipped();
  for (const id of [...devices.keys()]) if (!(id in msg.devices)) forget(id);
  for (const [id, dev] of Object.entries(msg.devices)) {
    try {
      const d = deviceView(id);
      d.state = {
        status: dev.status && dev.status.status, presence: dev.presence, stats: dev.stats,
        last_event: dev.last_event, summary: dev.summary, last_seen: dev.last_seen,
        timeline: (dev.timeline || []).map(([t, c]) => [t * 1000, c]),
        blocks: (dev.blocks || []).map(([t0, t1, c]) => [t0 * 1000, t1 * 1000, c]),
      };
      renderStatus(d); renderPresence(d); renderStats(d); renderEvent(d); renderSummary(d); drawTimeline(d);
    } catch (err) {
      pageError(err);
    }
  }
}

function setBroker(ok) {
  const b = document.getElementById("broker");
  b.textContent = ok ? "broker connected" : "broker down";
  b.className = "pill " + (ok ? "on" : "off");
  b.dataset.state = ok ? "connected" : "down";
}

function showSkipped() {
  const n = skipped.server + skipped.page;
  const pill = document.getElementById("skipped");
  pill.hidden = n === 0;
  pill.dataset.count = String(n);
  pill.textContent = `${n} malformed message${n === 1 ? "" : "s"} skipped`;
}

function pageError(err) {
  skipped.page += 1;
  showSkipped();
  console.warn("facecast dashboard: message skipped:", err);
}

function connect() {
  const conn = document.getElementById("conn");
  const source = new EventSource("events");
  source.onopen = () => { conn.textContent = "live"; conn.className = "pill on"; conn.dataset.state = "live"; };
  source.onerror = () => { conn.textContent = "reconnecting…"; conn.className = "pill off"; conn.dataset.state = "down"; };
  source.onmessage = (ev) => {
    try {
      const msg = JSON.parse(ev.data);
      if (msg.type === "snapshot") snapshot(msg);
      else if (msg.type === "broker") setBroker(msg.connected);
      else if (msg.type === "malformed") { skipped.server = msg.count; showSkipped(); }
      else if (msg.type === "dismiss") forget(msg.device);
      else apply(deviceView(msg.device), msg);
    } catch (err) {
      pageError(err);
    }
  };
}

connect();
setInterval(() => devices.forEach((d) => { try { renderStatus(d); drawTimeline(d); } catch (err) { pageError(err); } }), 2000);
