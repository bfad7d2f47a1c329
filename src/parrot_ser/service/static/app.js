// PARROT-SER page: model card, upload or microphone, probabilities (short clip) or timeline (long).
// Plain browser JavaScript, no library: everything this page needs is served by parrot-ser itself.
"use strict";
const SHORT_SECONDS = 20;
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
let labels = [];
let dims = [];  // dimensions (arousal, ...) of a model trained on them, in the data's scale
const $ = (id) => document.getElementById(id);

function token() { return sessionStorage.getItem("parrot-token") || ""; }
function headers() { return token() ? { "Authorization": "Bearer " + token() } : {}; }
function colour(label) { const i = labels.indexOf(label); return COLOURS[(i < 0 ? 0 : i) % COLOURS.length]; }
// dimensions take the palette's next colours, so no curve shares a label's colour
function dimColour(d) { return COLOURS[(labels.length + Math.max(0, dims.indexOf(d))) % COLOURS.length]; }
function dimText(values) { return dims.map((d) => esc(d) + " " + Number(values[d]).toFixed(2)).join(", "); }
function esc(s) { return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c])); }
function mmss(t) { t = Math.max(0, Math.round(t)); return Math.floor(t / 60) + ":" + String(t % 60).padStart(2, "0"); }
function status(text, error) { const s = $("status"); s.textContent = text; s.className = error ? "error" : ""; }

async function api(path, options) {
  const r = await fetch(path, Object.assign({}, options, { headers: Object.assign(headers(), (options || {}).headers || {}) }));
  if (r.status === 401) { $("token-box").hidden = false; throw new Error("this service needs its token"); }
  if (!r.ok) { let d = r.statusText; try { d = (await r.json()).detail; } catch (e) { /* not JSON */ } throw new Error(d); }
  return r.json();
}

async function loadCard() {
  try {
    const info = await api("/v1/model");
    labels = info.labels || [];
    dims = info.dims || [];
    const untrained = info.untrained || [];
    const encs = (info.encoders || []).map((e) => esc(e.name) + " " + (e.random_init
      ? '<span class="badge untrained">UNTRAINED</span>' : '<span class="badge real">real weights</span>')).join(", ");
    const head = ((info.training || {}).headline || {}).accuracy || {};
    const clips = (info.training || {}).clip_seconds;
    $("card-body").innerHTML = '<dl class="facts">' +
      (labels.length ? "<dt>labels</dt><dd id=\"card-labels\">" + labels.map(esc).join(", ") + "</dd>" : "") +
      (dims.length ? "<dt>dimensions</dt><dd id=\"card-dims\">" + dims.map(esc).join(", ") + "</dd>" : "") +
      "<dt>encoders</dt><dd id=\"card-encoders\">" + encs + "</dd>" +
      "<dt>model</dt><dd>" + esc((info.model || {}).name || "?") + " (" + esc((info.ensemble || {}).kind || "") + ", " +
        esc((info.ensemble || {}).n_members || "?") + " member(s))</dd>" +
      (head.mean !== undefined ? "<dt>CV accuracy</dt><dd>" + head.mean.toFixed(1) + " ± " + (head.std || 0).toFixed(1) + " %</dd>" : "") +
      (clips ? "<dt>training clips</dt><dd>median " + clips.median + " s</dd>" : "") + "</dl>" +
      (untrained.length ? '<div class="warning" id="card-warning">' + esc((info.warnings || [])[0] || "UNTRAINED encoders") + "</div>" : "");
    $("token-box").hidden = true;
  } catch (e) { $("card-body").textContent = "model card unavailable: " + e.message; }
}

function showProbabilities(name, body) {
  const probs = Object.entries(body.probabilities || {}).sort((a, b) => b[1] - a[1]);
  $("result-title").textContent = "Emotion of " + name + " (" + body.duration.toFixed(1) + " s)";
  $("result-body").innerHTML = (body.label ? '<div class="top-label" id="top-label" style="color:' + colour(body.label) + '">' + esc(body.label) + "</div>" : "") +
    (dims.length && body.dimensions ? '<div class="dims" id="dims">' + dimText(body.dimensions) + "</div>" : "") +
    probs.map(([k, v]) => '<div class="bar-row" data-label="' + esc(k) + '"><span>' + esc(k) + '</span><div class="bar"><div style="width:' +
      (100 * v).toFixed(1) + "%;background:" + colour(k) + '"></div></div><span class="num">' + (100 * v).toFixed(1) + " %</span></div>").join("") +
    (body.warnings || []).map((w) => '<div class="warning">' + esc(w) + "</div>").join("");
  $("result").hidden = false;
}

// one curve per name: a step per window, joined only where a window starts where the last one ended
// (not across silence or overlap)
function curvePath(wins, value, x, y) {
  let d = "", prevEnd = null;
  wins.forEach((w) => {
    const v = value(w);
    d += (prevEnd !== null && Math.abs(w.start - prevEnd) < 0.05 ? "L" : "M") + x(w.start) + " " + y(v) + "L" + x(w.end) + " " + y(v);
    prevEnd = w.end;
  });
  return d;
}

function dimPanel(rec, x, top, h, W, L, R) {
  const vals = rec.windows.flatMap((w) => dims.map((d) => w.dimensions[d]));
  let lo = Math.min(...vals), hi = Math.max(...vals);
  if (!(hi > lo)) { lo -= 0.5; hi += 0.5; }
  const y = (v) => top + h * (hi - v) / (hi - lo);
  let s = "";
  [lo, (lo + hi) / 2, hi].forEach((v) => { s += '<line x1="' + L + '" x2="' + (W - R) + '" y1="' + y(v) + '" y2="' + y(v) + '" stroke="#ddd"/><text x="' + (L - 6) + '" y="' + (y(v) + 4) + '" font-size="11" text-anchor="end">' + v.toFixed(1) + "</text>"; });
  dims.forEach((d) => { s += '<path class="dim-curve" d="' + curvePath(rec.windows, (w) => w.dimensions[d], x, y) + '" fill="none" stroke="' + dimColour(d) + '" stroke-width="2" stroke-dasharray="6 3"/>'; });
  return s + '<text x="4" y="' + (top + 12) + '" font-size="11">dim.</text>';
}

function timelineSvg(rec) {
  const W = 900, L = 60, R = 10, bandY = 10, bandH = labels.length ? 34 : 18, plotY = bandY + bandH + 16;
  const plotH = labels.length ? 140 : 0, dimY = plotY + plotH + (labels.length ? 16 : 0), dimH = dims.length ? 110 : 0;
  const H = dimY + dimH + 30;
  const dur = Math.max(rec.duration, 0.001), x = (t) => L + (W - L - R) * t / dur, y = (p) => plotY + plotH * (1 - p);
  let s = '<svg id="timeline-svg" viewBox="0 0 ' + W + " " + H + '" width="100%" role="img" aria-label="timeline">';
  rec.regions.forEach(([a, b]) => { s += '<rect x="' + x(a) + '" y="' + (bandY + bandH - 8) + '" width="' + Math.max(1, x(b) - x(a)) + '" height="8" fill="#999"/>'; });
  rec.segments.filter((g) => g.label).forEach((g) => {
    s += '<rect class="seg" x="' + x(g.start) + '" y="' + bandY + '" width="' + Math.max(1, x(g.end) - x(g.start)) + '" height="' + (bandH - 10) + '" fill="' + colour(g.label) + '"><title>' +
      esc(g.label) + " " + mmss(g.start) + "-" + mmss(g.end) + "</title></rect>";
  });
  if (labels.length) {
    [0, 0.5, 1].forEach((p) => { s += '<line x1="' + L + '" x2="' + (W - R) + '" y1="' + y(p) + '" y2="' + y(p) + '" stroke="#ddd"/><text x="' + (L - 6) + '" y="' + (y(p) + 4) + '" font-size="11" text-anchor="end">' + p + "</text>"; });
    labels.forEach((lab) => { s += '<path d="' + curvePath(rec.windows, (w) => w.probabilities[lab], x, y) + '" fill="none" stroke="' + colour(lab) + '" stroke-width="2"/>'; });
    s += '<text x="4" y="' + (bandY + 16) + '" font-size="11">label</text><text x="4" y="' + (plotY + 12) + '" font-size="11">prob.</text>';
  }
  if (dims.length && rec.windows.length) s += dimPanel(rec, x, dimY, dimH, W, L, R);
  const step = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600].find((v) => dur / v <= 10) || 3600;
  for (let t = 0; t <= dur; t += step) { s += '<text x="' + x(t) + '" y="' + (H - 8) + '" font-size="11" text-anchor="middle">' + mmss(t) + "</text>"; }
  return s + '<text x="4" y="' + (bandY + bandH - 1) + '" font-size="11">speech</text></svg>';
}

function showTimeline(name, doc) {
  const rec = doc.recordings[0];
  $("result-title").textContent = "Timeline of " + name + " (" + mmss(rec.duration) + ", " + rec.segments.length + " segments)";
  const cells = (g) => (labels.length ? '<td style="color:' + colour(g.label) + '"><b>' + esc(g.label) + "</b></td><td>" +
    (100 * g.probabilities[g.label]).toFixed(0) + " %</td>" : "") + dims.map((d) => "<td>" + Number(g.dimensions[d]).toFixed(2) + "</td>").join("");
  $("result-body").innerHTML = '<div class="legend">' + labels.map((l) => '<span style="--c:' + colour(l) + '">' + esc(l) + "</span>").join("") +
    dims.map((d) => '<span class="dim" style="--c:' + dimColour(d) + '">' + esc(d) + "</span>").join("") +
    '<span style="--c:#999">speech</span></div>' + timelineSvg(rec) +
    '<table class="segments" id="segments"><tr><th>from</th><th>to</th>' + (labels.length ? "<th>emotion</th><th>probability</th>" : "") +
    dims.map((d) => "<th>" + esc(d) + "</th>").join("") + "</tr>" +
    rec.segments.map((g) => "<tr><td>" + mmss(g.start) + "</td><td>" + mmss(g.end) + "</td>" + cells(g) + "</tr>").join("") + "</table>" +
    (doc.warnings || []).map((w) => '<div class="warning">' + esc(w) + "</div>").join("");
  $("result").hidden = false;
}

async function duration(blob) {
  if (blob.size > 20e6) return Infinity;  // large: certainly long, do not decode it in the page
  try {
    const ctx = new (window.AudioContext || window.webkitAudioContext)();
    const buf = await ctx.decodeAudioData(await blob.arrayBuffer());
    ctx.close();
    return buf.duration;
  } catch (e) { return 0; }  // the browser cannot decode it: let the server decide
}

async function send(blob, name) {
  $("go").disabled = true;
  status("analysing " + name + " …");
  try {
    const form = new FormData();
    form.append("file", blob, name);
    const secs = await duration(blob);
    if (secs > SHORT_SECONDS) showTimeline(name, await api("/v1/analyze", { method: "POST", body: form }));
    else showProbabilities(name, await api("/v1/predict", { method: "POST", body: form }));
    status("done");
  } catch (e) { status(e.message, true); }
  $("go").disabled = !$("file").files.length;
}

// Microphone: raw samples through the Web Audio API, sent as a 16-bit WAV (MediaRecorder would give
// WebM, which the service does not decode).
let rec = null;
function wavBlob(chunks, rate) {
  const n = chunks.reduce((a, c) => a + c.length, 0), buf = new ArrayBuffer(44 + 2 * n), v = new DataView(buf);
  const str = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
  str(0, "RIFF"); v.setUint32(4, 36 + 2 * n, true); str(8, "WAVE"); str(12, "fmt "); v.setUint32(16, 16, true);
  v.setUint16(20, 1, true); v.setUint16(22, 1, true); v.setUint32(24, rate, true); v.setUint32(28, 2 * rate, true);
  v.setUint16(32, 2, true); v.setUint16(34, 16, true); str(36, "data"); v.setUint32(40, 2 * n, true);
  let o = 44;
  chunks.forEach((c) => c.forEach((x) => { v.setInt16(o, Math.max(-1, Math.min(1, x)) * 32767, true); o += 2; }));
  return new Blob([buf], { type: "audio/wav" });
}
async function toggleRecording() {
  if (rec) {
    rec.node.disconnect(); rec.stream.getTracks().forEach((t) => t.stop()); rec.ctx.close();
    const blob = wavBlob(rec.chunks, rec.ctx.sampleRate);
    rec = null; $("rec").textContent = "Record"; $("rec").classList.remove("recording");
    return send(blob, "microphone.wav");
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const ctx = new AudioContext(), src = ctx.createMediaStreamSource(stream), node = ctx.createScriptProcessor(4096, 1, 1);
    rec = { stream, ctx, node, chunks: [] };
    node.onaudioprocess = (e) => rec && rec.chunks.push(new Float32Array(e.inputBuffer.getChannelData(0)));
    src.connect(node); node.connect(ctx.destination);
    $("rec").textContent = "Stop"; $("rec").classList.add("recording"); status("recording … press Stop to analyse");
  } catch (e) { status("microphone unavailable: " + e.message, true); }
}

$("file").addEventListener("change", () => { $("go").disabled = !$("file").files.length; });
$("go").addEventListener("click", () => { const f = $("file").files[0]; if (f) send(f, f.name); });
$("rec").addEventListener("click", toggleRecording);
$("token-go").addEventListener("click", () => { sessionStorage.setItem("parrot-token", $("token").value.trim()); loadCard(); });
$("short-limit").textContent = SHORT_SECONDS;
loadCard();
