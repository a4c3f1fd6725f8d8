// The timeline page: one canvas of lanes (a session each), bars (a stream each),
// markers, flush density and loop_blocked spans, with zoom, pan, search and findings.
// Every string from the log is written with textContent, never parsed as HTML.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("timeline-data").textContent);
  const B = D.bars, M = D.markers;
  const COLORS = {
    completed: "#2e7d32", superseded: "#1565c0", disconnected: "#ef6c00", error: "#c62828",
    shutdown: "#616161", send_timeout: "#6a1b9a", open: "#b71c1c", restarted: "#7f1d1d",
    unknown: "#9e9e9e",
  };
  const MARKS = {
    cancel: ["#ea580c", "cancel (stream_cancelled)"],
    fence: ["#7c3aed", "fence (stream_fenced)"],
    cleanup: ["#16a34a", "cleanup step"],
    prev_finished: ["#0284c7", "prev_stream_finished_cleanly"],
    prev_timeout: ["#dc2626", "prev_stream_timeout_on_cancel"],
    rejected: ["#111827", "request_rejected"],
  };
  const AXIS_H = 26, LANE_H = 24, LABEL_W = 180, PAD = 3;
  const span = Math.max(1, D.span_ms);
  const nLanes = D.lanes.length;
  const laneBars = Array.from({ length: nLanes }, () => []);
  for (let i = 0; i < B.lane.length; i++) if (B.lane[i] >= 0) laneBars[B.lane[i]].push(i);
  // Streams of a lane that overlap in time get tracks of their own (a lane split in
  // two or more): an overlap is exactly what the page must make visible.
  // Past 8 tracks a bar would be thinner than 2 px: more overlapping streams share them.
  const MAX_TRACKS = 8;
  const barTrack = new Array(B.lane.length).fill(0);
  const laneTracks = new Array(nLanes).fill(1);
  laneBars.forEach((bars, lane) => {
    const ends = [];
    for (const i of bars.sort((x, y) => B.start[x] - B.start[y])) {
      const end = B.end[i] < 0 ? Infinity : B.end[i];
      let k = ends.findIndex((e) => e <= B.start[i]);
      if (k < 0) { k = ends.length; ends.push(end); } else ends[k] = end;
      barTrack[i] = k % MAX_TRACKS;
    }
    laneTracks[lane] = Math.max(1, Math.min(MAX_TRACKS, ends.length));
  });
  const laneMarks = Array.from({ length: nLanes }, () => []);
  for (let i = 0; i < M.lane.length; i++) if (M.lane[i] >= 0) laneMarks[M.lane[i]].push(i);
  const laneDensity = Array.from({ length: nLanes }, () => []);
  let maxDensity = 1;
  for (let i = 0; i < D.density.lane.length; i++) {
    laneDensity[D.density.lane[i]].push(i);
    maxDensity = Math.max(maxDensity, D.density.n[i]);
  }
  // Findings whose session had no lane of their own draw their evidence on the lane
  // the writer gave them.
  const laneEvidence = Array.from({ length: nLanes }, () => []);
  D.findings.forEach((f, k) => { if (f.lane >= 0 && f.bars.length === 0) laneEvidence[f.lane].push(k); });

  const state = {
    a: -span * 0.01, b: span * 1.01, // the view, in ms from t0
    scroll: 0,                       // px scrolled down the lanes
    shown: [...Array(nLanes).keys()],
    selected: -1,                    // finding index
    picked: new Set(),               // bars highlighted
    evidenceT: [],
  };

  const canvas = document.getElementById("canvas");
  const ctx = canvas.getContext("2d");
  const tip = document.getElementById("tip");
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const fmtMs = (ms) => {
    const abs = Math.abs(ms);
    if (abs >= 60000) return (ms / 60000).toFixed(2) + " min";
    if (abs >= 1000) return (ms / 1000).toFixed(3) + " s";
    return ms.toFixed(abs < 10 ? 1 : 0) + " ms";
  };
  // An axis label as precise as the tick step needs (8.38 min is useless at 50 ms steps).
  const fmtTick = (ms, step) => {
    if (step >= 60000) return (ms / 60000).toFixed(step % 60000 ? 1 : 0) + " min";
    if (step >= 1000 || Math.abs(ms) >= 1000) {
      const digits = Math.max(0, Math.min(3, Math.ceil(-Math.log10(step / 1000))));
      return (ms / 1000).toFixed(digits) + " s";
    }
    return ms.toFixed(Math.max(0, Math.ceil(-Math.log10(step)))) + " ms";
  };
  const minOf = (xs) => xs.reduce((m, x) => (x < m ? x : m), Infinity);
  const maxOf = (xs) => xs.reduce((m, x) => (x > m ? x : m), -Infinity);
  const clock = (ms) => new Date(D.t0 * 1000 + ms).toISOString().replace("T", " ").replace("Z", "");

  // -- header, legend, findings ------------------------------------------------
  const verdict = document.getElementById("verdict");
  verdict.textContent = D.verdict;
  verdict.className = D.verdict;
  const c = D.coverage, s = D.stats;
  document.getElementById("summary").textContent =
    `${D.lanes.length} lanes, ${B.lane.length} streams drawn (${s.streams} in the log), ` +
    `${s.cancels} cancels, ${s.flushes} flushes, ${s.loop_blocked} loop_blocked; ` +
    `${c.lines} lines of ${(c.sources || []).join(", ")}; ` +
    (D.t0 ? `from ${clock(0)} UTC over ${fmtMs(span)}` : "no timestamps") +
    (D.diagnosis.length ? `; diagnosis: ${D.diagnosis.join(" → ")}` : "") +
    `; exit code ${D.exit_code}`;
  const notes = document.getElementById("notes");
  for (const note of D.notes) notes.appendChild(el("li", "", note));

  const legend = document.getElementById("legend");
  const used = new Set(D.reasons);
  for (const reason of Object.keys(COLORS)) {
    if (!used.has(reason)) continue;
    const item = el("span");
    const sw = el("span", "swatch");
    sw.style.background = COLORS[reason];
    item.append(sw, reason === "open" ? "never ended" : reason);
    legend.appendChild(item);
  }
  for (const reason of D.reasons) {
    if (reason in COLORS) continue;
    const item = el("span");
    const sw = el("span", "swatch");
    sw.style.background = COLORS.unknown;
    item.append(sw, reason);
    legend.appendChild(item);
  }
  for (const kind of D.kinds) {
    const item = el("span");
    const sw = el("span", "swatch");
    sw.style.background = MARKS[kind][0];
    sw.style.width = "4px";
    item.append(sw, MARKS[kind][1]);
    legend.appendChild(item);
  }
  const dens = el("span");
  const dsw = el("span", "swatch");
  dsw.style.background = "#cbd5e1";
  dens.append(dsw, `flush density (bins of ${fmtMs(D.density.bin_ms)})`);
  const loop = el("span");
  const lsw = el("span", "swatch");
  lsw.style.background = "rgba(220,38,38,0.25)";
  loop.append(lsw, "loop_blocked");
  legend.append(dens, loop);

  const list = document.getElementById("findings");
  document.getElementById("finding-count").textContent = `(${D.findings.length})`;
  D.findings.forEach((f, k) => {
    const li = el("li");
    li.dataset.testid = "finding";
    li.dataset.index = String(k);
    li.append(el("span", "sev " + f.severity, f.severity), el("b", "", f.id + ": "), f.message);
    li.addEventListener("click", () => select(k));
    list.appendChild(li);
  });
  if (!D.findings.length) list.appendChild(el("p", "dim", "No findings: every invariant held."));

  // -- geometry ----------------------------------------------------------------
  let width = 0, height = 0;
  const plotW = () => Math.max(10, width - LABEL_W);
  const X = (ms) => LABEL_W + ((ms - state.a) / (state.b - state.a)) * plotW();
  const T = (x) => state.a + ((x - LABEL_W) / plotW()) * (state.b - state.a);
  const maxScroll = () => Math.max(0, state.shown.length * LANE_H - (height - AXIS_H));
  const rowAt = (y) => Math.floor((y - AXIS_H + state.scroll) / LANE_H);

  function resize() {
    const box = canvas.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    width = box.width; height = box.height;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    draw();
  }

  function niceStep(range) {
    const raw = range / 8;
    const pow = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1e-6))));
    for (const m of [1, 2, 5, 10]) if (raw <= m * pow) return m * pow;
    return 10 * pow;
  }

  // -- drawing -----------------------------------------------------------------
  function draw() {
    ctx.clearRect(0, 0, width, height);
    const selecting = state.selected >= 0 || state.picked.size > 0;
    const first = Math.max(0, Math.floor(state.scroll / LANE_H));
    const last = Math.min(state.shown.length, Math.ceil((state.scroll + height - AXIS_H) / LANE_H));
    ctx.save();
    ctx.beginPath();
    ctx.rect(0, AXIS_H, width, height - AXIS_H);
    ctx.clip();
    for (let row = first; row < last; row++) {
      const lane = state.shown[row];
      const y = AXIS_H + row * LANE_H - state.scroll;
      ctx.fillStyle = row % 2 ? "#fafafa" : "#ffffff";
      ctx.fillRect(0, y, width, LANE_H);
      drawDensity(lane, y);
      drawBars(lane, y, selecting);
      drawMarks(lane, y);
      drawLaneEvidence(lane, y);
      ctx.fillStyle = "#ffffff";
      ctx.fillRect(0, y, LABEL_W - 2, LANE_H);
      ctx.fillStyle = "#1b1f24";
      ctx.font = "12px system-ui, sans-serif";
      ctx.textBaseline = "middle";
      let label = D.lanes[lane];
      if (ctx.measureText(label).width > LABEL_W - 10) {
        while (label.length > 3 && ctx.measureText(label + "…").width > LABEL_W - 10) label = label.slice(0, -1);
        label += "…";
      }
      ctx.fillText(label, 6, y + LANE_H / 2);
    }
    ctx.restore();
    drawLoop();
    drawEvidenceLines();
    drawAxis();
    const range = document.getElementById("range");
    const step = niceStep(state.b - state.a);
    range.textContent = `${fmtTick(state.a, step)} … ${fmtTick(state.b, step)} (${fmtMs(state.b - state.a)} shown)`;
    range.dataset.a = String(Math.round(state.a));
    range.dataset.b = String(Math.round(state.b));
  }

  function drawDensity(lane, y) {
    const bins = laneDensity[lane];
    if (!bins.length) return;
    const w = D.density.bin_ms;
    ctx.fillStyle = "#cbd5e1";
    for (const i of bins) {
      const t = D.density.bin[i] * w;
      if (t + w < state.a || t > state.b) continue;
      const x1 = X(t), x2 = X(t + w);
      const h = Math.max(1, (D.density.n[i] / maxDensity) * (LANE_H - 4));
      ctx.fillRect(Math.max(LABEL_W, x1), y + LANE_H - 1 - h, Math.max(1, x2 - Math.max(LABEL_W, x1)), h);
    }
  }

  function barEnd(i) { return B.end[i] < 0 ? span : B.end[i]; }

  function drawBars(lane, y, selecting) {
    for (const i of laneBars[lane]) {
      const s0 = B.start[i], s1 = barEnd(i);
      if (s1 < state.a || s0 > state.b) continue;
      const x1 = Math.max(LABEL_W, X(s0)), x2 = Math.max(x1 + 2, X(s1));
      const reason = D.reasons[B.reason[i]];
      const h = (LANE_H - 2 * PAD - 2) / laneTracks[lane];
      const top = y + PAD + barTrack[i] * h;
      ctx.globalAlpha = selecting && !state.picked.has(i) ? 0.3 : 0.85;
      ctx.fillStyle = COLORS[reason] || COLORS.unknown;
      ctx.fillRect(x1, top, x2 - x1, Math.max(2, h - 1));
      ctx.globalAlpha = 1;
      if (B.end[i] < 0) { // never ended: a dashed edge running to the end of the log
        ctx.setLineDash([3, 2]);
        ctx.strokeStyle = "#7f1d1d";
        ctx.strokeRect(x1 + 0.5, top + 0.5, x2 - x1 - 1, Math.max(1, h - 2));
        ctx.setLineDash([]);
      }
      if (state.picked.has(i)) {
        ctx.lineWidth = 2;
        ctx.strokeStyle = "#f59e0b";
        ctx.strokeRect(x1 - 1, top - 1, x2 - x1 + 2, h + 1);
        ctx.lineWidth = 1;
      }
    }
  }

  function drawMarks(lane, y) {
    for (const i of laneMarks[lane]) {
      const t = M.t[i];
      if (t < state.a || t > state.b) continue;
      const x = X(t);
      const kind = D.kinds[M.kind[i]];
      ctx.fillStyle = MARKS[kind][0];
      const mid = y + LANE_H / 2 - 1;
      if (kind === "cancel" || kind === "fence") {
        ctx.fillRect(x - 1, y + 1, kind === "fence" ? 3 : 2, LANE_H - 3);
      } else if (kind === "cleanup" || kind === "rejected") {
        ctx.beginPath(); ctx.arc(x, mid, 2.5, 0, 2 * Math.PI); ctx.fill();
      } else {
        ctx.beginPath(); ctx.moveTo(x, y + 2); ctx.lineTo(x - 4, y + 9); ctx.lineTo(x + 4, y + 9); ctx.fill();
      }
    }
  }

  function drawLaneEvidence(lane, y) {
    for (const k of laneEvidence[lane]) {
      for (const ev of D.findings[k].evidence) {
        if (ev.t === null || ev.t < state.a || ev.t > state.b) continue;
        ctx.fillStyle = k === state.selected ? "#f59e0b" : "#c62828";
        const x = X(ev.t);
        ctx.beginPath(); ctx.moveTo(x, y + 3); ctx.lineTo(x + 5, y + LANE_H / 2); ctx.lineTo(x, y + LANE_H - 3); ctx.lineTo(x - 5, y + LANE_H / 2); ctx.fill();
      }
    }
  }

  function drawLoop() {
    for (const [a, b, lag] of D.loop) {
      if (b < state.a || a > state.b) continue;
      const x1 = Math.max(LABEL_W, X(a)), x2 = Math.max(x1 + 2, X(b));
      ctx.fillStyle = "rgba(220,38,38,0.22)";
      ctx.fillRect(x1, AXIS_H, x2 - x1, height - AXIS_H);
      ctx.fillStyle = "#991b1b";
      ctx.font = "11px system-ui, sans-serif";
      ctx.fillText(`loop blocked ${lag} ms`, x1 + 3, AXIS_H + 8);
    }
  }

  function drawEvidenceLines() {
    ctx.strokeStyle = "#f59e0b";
    ctx.setLineDash([4, 3]);
    for (const t of state.evidenceT) {
      if (t < state.a || t > state.b) continue;
      const x = Math.round(X(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, AXIS_H); ctx.lineTo(x, height); ctx.stroke();
    }
    ctx.setLineDash([]);
  }

  function drawAxis() {
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, width, AXIS_H);
    ctx.strokeStyle = "#e5e7eb";
    ctx.beginPath(); ctx.moveTo(0, AXIS_H - 0.5); ctx.lineTo(width, AXIS_H - 0.5); ctx.stroke();
    const step = niceStep(state.b - state.a);
    ctx.fillStyle = "#6b7280";
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    for (let t = Math.ceil(state.a / step) * step; t <= state.b; t += step) {
      const x = Math.round(X(t)) + 0.5;
      if (x < LABEL_W) continue;
      ctx.strokeStyle = "#e5e7eb";
      ctx.beginPath(); ctx.moveTo(x, AXIS_H - 6); ctx.lineTo(x, AXIS_H); ctx.stroke();
      ctx.fillText(fmtTick(t, step), x + 2, AXIS_H / 2);
    }
    ctx.fillStyle = "#1b1f24";
    ctx.fillText("session", 6, AXIS_H / 2);
  }

  // -- view changes ----------------------------------------------------------------
  function zoom(factor, atMs) {
    const at = atMs === undefined ? (state.a + state.b) / 2 : atMs;
    let w = (state.b - state.a) * factor;
    w = Math.min(Math.max(w, 0.05), span * 20);
    const f = (at - state.a) / (state.b - state.a);
    state.a = at - f * w;
    state.b = state.a + w;
    draw();
  }
  function fit() { state.a = -span * 0.01; state.b = span * 1.01; draw(); }
  function show(a, b) {
    const pad = Math.max((b - a) * 0.15, 5);
    state.a = a - pad; state.b = b + pad;
  }
  function scrollTo(lane) {
    const row = state.shown.indexOf(lane);
    if (row < 0) return;
    const y = row * LANE_H, room = height - AXIS_H;
    if (y < state.scroll || y + LANE_H > state.scroll + room) state.scroll = Math.max(0, Math.min(maxScroll(), y - room / 3));
  }

  document.getElementById("zoom-in").addEventListener("click", () => zoom(0.5));
  document.getElementById("zoom-out").addEventListener("click", () => zoom(2));
  document.getElementById("fit").addEventListener("click", fit);
  document.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement) return;
    if (e.key === "+" || e.key === "=") zoom(0.5);
    else if (e.key === "-") zoom(2);
    else if (e.key === "0") fit();
    else if (e.key === "ArrowLeft") { const w = state.b - state.a; state.a -= w * 0.2; state.b -= w * 0.2; draw(); }
    else if (e.key === "ArrowRight") { const w = state.b - state.a; state.a += w * 0.2; state.b += w * 0.2; draw(); }
  });
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const box = canvas.getBoundingClientRect();
    if (e.ctrlKey || e.metaKey || e.altKey) {
      zoom(Math.exp(e.deltaY * 0.002), T(e.clientX - box.left));
    } else if (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
      const d = ((e.shiftKey ? e.deltaY : e.deltaX) / plotW()) * (state.b - state.a);
      state.a += d; state.b += d; draw();
    } else {
      state.scroll = Math.max(0, Math.min(maxScroll(), state.scroll + e.deltaY));
      draw();
    }
  }, { passive: false });

  let drag = null;
  canvas.addEventListener("mousedown", (e) => {
    drag = { x: e.clientX, y: e.clientY, a: state.a, b: state.b, scroll: state.scroll, moved: false };
    canvas.classList.add("dragging");
  });
  window.addEventListener("mouseup", (e) => {
    canvas.classList.remove("dragging");
    if (drag && !drag.moved) click(e);
    drag = null;
  });
  window.addEventListener("mousemove", (e) => {
    if (drag) {
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
      const d = (dx / plotW()) * (drag.b - drag.a);
      state.a = drag.a - d; state.b = drag.b - d;
      state.scroll = Math.max(0, Math.min(maxScroll(), drag.scroll - dy));
      tip.hidden = true;
      draw();
      return;
    }
    hover(e);
  });
  canvas.addEventListener("dblclick", (e) => {
    const box = canvas.getBoundingClientRect();
    zoom(0.5, T(e.clientX - box.left));
  });

  function barAt(e) {
    const box = canvas.getBoundingClientRect();
    const x = e.clientX - box.left, y = e.clientY - box.top;
    if (x < LABEL_W || y < AXIS_H || x > width || y > height) return -1;
    const row = rowAt(y);
    if (row < 0 || row >= state.shown.length) return -1;
    const t = T(x), slack = (4 / plotW()) * (state.b - state.a);
    let best = -1;
    for (const i of laneBars[state.shown[row]]) {
      if (B.start[i] - slack <= t && t <= barEnd(i) + slack) best = i; // the latest wins
    }
    return best;
  }

  function describe(i) {
    const reason = D.reasons[B.reason[i]];
    const flags = [];
    if (B.flags[i] & 1) flags.push("cancelled");
    if (B.flags[i] & 2) flags.push("fenced");
    if (B.flags[i] & 4) flags.push("cleanup not done");
    const end = B.end[i] < 0 ? "never ended" : fmtMs(B.end[i] - B.start[i]);
    return [
      ["session", D.lanes[B.lane[i]]],
      ["trace", B.trace[i]],
      ["stream id", B.sid[i] || B.trace[i]],
      ["start", `${clock(B.start[i])} (+${fmtMs(B.start[i])})`],
      ["duration", end],
      ["ended", reason === "open" ? "never (no stream_end)" : reason],
      ["flags", flags.join(", ") || "none"],
      ...(D.inputs.length > 1 ? [["process", D.inputs[B.input[i]] || "?"]] : []),
    ];
  }

  function hover(e) {
    const i = barAt(e);
    if (i < 0) { tip.hidden = true; return; }
    const box = canvas.getBoundingClientRect();
    tip.textContent = describe(i).map(([k, v]) => `${k}: ${v}`).join("\n");
    tip.hidden = false;
    tip.style.left = Math.min(e.clientX - box.left + 12, width - 300) + "px";
    tip.style.top = (e.clientY - box.top + 12) + "px";
  }

  function click(e) {
    const i = barAt(e);
    if (i < 0) return;
    state.selected = -1;
    state.picked = new Set([i]);
    state.evidenceT = [];
    markSelected();
    const details = document.getElementById("details");
    details.replaceChildren();
    details.appendChild(el("h3", "", "Stream"));
    const dl = el("dl");
    dl.dataset.testid = "stream-details";
    for (const [k, v] of describe(i)) dl.append(el("dt", "", k), el("dd", "", v));
    details.appendChild(dl);
    const marks = laneMarks[B.lane[i]].filter((m) => M.bar[m] === i);
    if (marks.length) {
      const ul = el("ul");
      for (const m of marks) ul.appendChild(el("li", "", `${D.kinds[M.kind[m]]} at +${fmtMs(M.t[m] - B.start[i])}`));
      details.appendChild(ul);
    }
    draw();
  }

  function markSelected() {
    for (const li of list.querySelectorAll("li")) li.classList.toggle("selected", Number(li.dataset.index) === state.selected);
  }

  function select(k) {
    const f = D.findings[k];
    state.selected = k;
    state.picked = new Set(f.bars);
    state.evidenceT = f.evidence.map((ev) => ev.t).filter((t) => t !== null);
    markSelected();
    const lanes = new Set(f.bars.map((i) => B.lane[i]));
    if (f.lane >= 0) lanes.add(f.lane);
    if ([...lanes].some((l) => !state.shown.includes(l))) clearSearch();
    const times = [...state.evidenceT];
    for (const i of f.bars) times.push(B.start[i], barEnd(i));
    if (times.length) show(minOf(times), maxOf(times));
    const rows = [...lanes].map((l) => state.shown.indexOf(l)).filter((r) => r >= 0);
    if (rows.length) scrollTo(state.shown[Math.min(...rows)]);
    const details = document.getElementById("details");
    details.replaceChildren();
    const head = el("p");
    head.append(el("span", "sev " + f.severity, f.severity), el("b", "", f.id + ": "), f.message);
    details.appendChild(head);
    const ids = [];
    if (f.session) ids.push(`session ${f.session}`);
    if (f.trace) ids.push(`trace ${f.trace}`);
    if (ids.length) details.appendChild(el("p", "dim", ids.join(" · ")));
    details.appendChild(el("h3", "", `Evidence (${f.evidence.length} lines)`));
    for (const ev of f.evidence) {
      const box = el("div", "evidence");
      box.dataset.testid = "evidence";
      box.append(el("span", "where", `${ev.file}:${ev.line}` + (ev.t === null ? "" : ` · +${fmtMs(ev.t)}`)), ev.text);
      if (ev.t !== null) box.addEventListener("click", () => { const w = state.b - state.a; state.a = ev.t - w / 2; state.b = ev.t + w / 2; draw(); });
      details.appendChild(box);
    }
    details.appendChild(el("h3", "", "Remedy"));
    details.appendChild(el("p", "", f.remedy));
    draw();
  }

  // -- search ------------------------------------------------------------------------
  const search = document.getElementById("search");
  const matches = document.getElementById("matches");
  function clearSearch() { search.value = ""; applySearch(); }
  function applySearch() {
    const q = search.value.trim().toLowerCase();
    state.picked = state.selected >= 0 ? state.picked : new Set();
    if (!q) {
      state.shown = [...Array(nLanes).keys()];
      matches.textContent = "";
    } else {
      const hitLanes = new Set();
      const hitBars = new Set();
      D.lanes.forEach((name, l) => { if (name.toLowerCase().includes(q)) hitLanes.add(l); });
      for (let i = 0; i < B.lane.length; i++) {
        if (B.trace[i].toLowerCase().includes(q) || B.sid[i].toLowerCase().includes(q)) {
          hitLanes.add(B.lane[i]);
          hitBars.add(i);
        }
      }
      state.shown = [...hitLanes].sort((x, y) => x - y);
      if (state.selected < 0) state.picked = hitBars;
      matches.textContent = `${state.shown.length} of ${nLanes} lanes` + (hitBars.size ? `, ${hitBars.size} streams` : "");
    }
    matches.dataset.lanes = String(state.shown.length);
    state.scroll = Math.min(state.scroll, maxScroll());
    draw();
  }
  search.addEventListener("input", applySearch);
  search.addEventListener("keydown", (e) => {
    if (e.key !== "Enter" || !state.picked.size) return;
    const times = [];
    for (const i of state.picked) times.push(B.start[i], barEnd(i));
    show(minOf(times), maxOf(times));
    state.scroll = 0;
    draw();
  });
  matches.dataset.lanes = String(nLanes);
  if (D.context && D.context.search) { search.value = D.context.search; applySearch(); }

  window.addEventListener("resize", resize);
  resize();
  document.body.dataset.ready = "1";
})();
