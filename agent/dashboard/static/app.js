// facecast dashboard: one EventSource (/events) carrying a snapshot, then changes per device.
// Plain JS on purpose: no build step, nothing to vendor. Text goes in through textContent only.
"use strict";

const EMOTIONS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"];
const COLORS = {
  angry: "#d64541", disgust: "#7d9a2e", fear: "#8e44ad", happy: "#f1b82d",
  neutral: "#95a5a6", sad: "#3a78c3", surprise: "#e67e22",
};
const devices = new Map(); // device_id -> {state, el}
let timelineMs = 300000;
let clockSkewMs = 0; // server time - browser time

function el(sel, root) { return root.querySelector(sel); }

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
  document.getElementById("devices").append(node);
  document.getElementById("empty").hidden = true;
  d = { el: node, state: { timeline: [] } };
  devices.set(id, d);
  return d;
}

function renderStatus(d) {
  const status = d.state.status || "unknown";
  const online = status === "online";
  const pill = el(".status", d.el);
  pill.textContent = online ? "online" : status === "stopped" ? "offline (stopped)" : status;
  pill.className = "pill status " + (online ? "on" : "off");
  d.el.dataset.status = online ? "online" : "offline";
  d.el.classList.toggle("offline", !online);
}

function renderPresence(d) {
  const p = d.state.presence;
  const list = el(".faces", d.el);
  list.replaceChildren();
  if (!p) return;
  el(".faces-n", d.el).textContent = String(p.faces);
  el(".dominant", d.el).textContent = p.dominant_emotion || "–";
  for (const t of p.tracks || []) {
    const li = document.createElement("li");
    li.className = "face";
    li.dataset.track = String(t.id);
    const emo = document.createElement("span");
    emo.className = "emo";
    emo.textContent = t.emotion.label;
    emo.style.color = COLORS[t.emotion.label] || "inherit";
    const rest = document.createElement("span");
    rest.className = "gender";
    rest.textContent = t.gender ? ` ${t.gender.label} · #${t.id}` : ` #${t.id}`;
    li.append(emo, rest);
    list.append(li);
  }
}

function renderStats(d) {
  const s = d.state.stats;
  if (!s) return;
  el(".fps", d.el).textContent = (s.fps_processed ?? s.fps ?? 0).toFixed(1);
  const lat = s.latency_ms || {};
  // processing time per frame; "decode" is left out: on a paced camera it is mostly waiting
  const total = ["resize", "detect", "classify"]
    .map((k) => (lat[k] ? lat[k].median : 0)).reduce((a, b) => a + b, 0);
  el(".latency", d.el).textContent = total ? `${total.toFixed(1)} ms` : "–";
  el(".buffer", d.el).textContent = String(s.buffer_depth ?? "–");
}

function renderEvent(d) {
  const e = d.state.last_event;
  if (!e || !e.track) return;
  const t = e.track;
  el(".last-event", d.el).textContent =
    `last: ${e.type} #${t.id} ${t.emotion.label} (mostly ${t.emotion.dominant})` +
    `${t.gender ? ", " + t.gender.label : ""}, ${t.frames} frames`;
}

function drawTimeline(d) {
  const canvas = el(".timeline", d.el);
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const now = Date.now() + clockSkewMs;
  const start = now - timelineMs;
  const points = d.state.timeline;
  const maxFaces = Math.max(1, ...points.map(([, c]) => Object.values(c).reduce((a, b) => a + b, 0)));
  const x = (t) => ((t - start) / timelineMs) * w;
  for (let i = 0; i < points.length; i++) {
    const [t0, counts] = points[i];
    const t1 = i + 1 < points.length ? points[i + 1][0] : now;
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

function apply(d, msg) {
  const s = d.state;
  switch (msg.type) {
    case "status": s.status = msg.payload; renderStatus(d); break;
    case "presence":
      s.presence = msg.payload;
      if (msg.timeline_point) s.timeline.push([msg.timeline_point[0] * 1000, msg.timeline_point[1]]);
      renderPresence(d); break;
    case "stats": s.stats = msg.payload; renderStats(d); break;
    case "events": s.last_event = msg.payload; renderEvent(d); break;
    default: break;
  }
  const cutoff = Date.now() + clockSkewMs - timelineMs;
  while (s.timeline.length > 1 && s.timeline[1][0] < cutoff) s.timeline.shift();
  drawTimeline(d);
}

function snapshot(msg) {
  timelineMs = (msg.timeline_s || 300) * 1000;
  clockSkewMs = msg.now * 1000 - Date.now();
  setBroker(msg.broker);
  for (const [id, dev] of Object.entries(msg.devices)) {
    const d = deviceView(id);
    d.state = {
      status: dev.status, presence: dev.presence, stats: dev.stats, last_event: dev.last_event,
      timeline: (dev.timeline || []).map(([t, c]) => [t * 1000, c]),
    };
    renderStatus(d); renderPresence(d); renderStats(d); renderEvent(d); drawTimeline(d);
  }
}

function setBroker(ok) {
  const b = document.getElementById("broker");
  b.textContent = ok ? "broker connected" : "broker down";
  b.className = "pill " + (ok ? "on" : "off");
  b.dataset.state = ok ? "connected" : "down";
}

function connect() {
  const conn = document.getElementById("conn");
  const source = new EventSource("events");
  source.onopen = () => { conn.textContent = "live"; conn.className = "pill on"; conn.dataset.state = "live"; };
  source.onerror = () => { conn.textContent = "reconnecting…"; conn.className = "pill off"; conn.dataset.state = "down"; };
  source.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "snapshot") snapshot(msg);
    else if (msg.type === "broker") setBroker(msg.connected);
    else apply(deviceView(msg.device), msg);
  };
}

connect();
setInterval(() => devices.forEach(drawTimeline), 2000);
