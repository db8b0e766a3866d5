// The live page: camera + microphone (or a dropped file) -> WebSocket -> windows.
// Plain JS, no build step. Protocol: see emotion_mx/live/server.py.
"use strict";
const COLORS = ["#ff6b6b", "#ffa94d", "#ffd43b", "#69db7c", "#38d9a9", "#4dabf7", "#9775fa", "#f783ac",
                "#a9e34b", "#e599f7", "#74c0fc", "#ced4da"];
const FPS = 5, JPEG_WIDTH = 320, AUDIO_BLOCK = 2048;
const $ = (id) => document.getElementById(id);
const state = { info: null, ws: null, media: null, audioCtx: null, timer: null, rows: [], summary: null };
window.liveRows = state.rows;           // read by the browser test
window.liveState = state;

function color(label) { return COLORS[state.info.labels.indexOf(label) % COLORS.length]; }
function status(text) { $("status").textContent = text; }

// The API key, when the server wants one: from the address's #key=... (never sent in a URL to
// the server) or asked once; kept for this tab only. HTTP calls send it as X-API-Key, the
// WebSocket (which cannot send headers) in its start message.
const keyMatch = location.hash.match(/[#&]key=([^&]+)/);
if (keyMatch) { sessionStorage.setItem("emotion_mx_key", decodeURIComponent(keyMatch[1])); history.replaceState(null, "", location.pathname); }
function apiKey() { return sessionStorage.getItem("emotion_mx_key"); }
function authHeaders() { return apiKey() ? { "X-API-Key": apiKey() } : {}; }
async function authFetch(url, options = {}) {
  let r = await fetch(url, { ...options, headers: { ...(options.headers || {}), ...authHeaders() } });
  if (r.status === 401) {
    const key = window.prompt("This page needs the server's API key:");
    if (!key) return r;
    sessionStorage.setItem("emotion_mx_key", key);
    r = await fetch(url, { ...options, headers: { ...(options.headers || {}), ...authHeaders() } });
  }
  return r;
}
async function errorText(r) {
  try { const e = await r.json(); return e.detail || e.error || r.statusText; } catch (_) { return r.statusText; }
}
function hasText() { return state.info.modalities.includes("text"); }
function transcript() { return hasText() ? $("transcript").value : ""; }

// The controls name only what the model takes: camera, microphone, a transcript.
function labelControls(i) {
  const mods = i.modalities, a = mods.includes("audio"), v = mods.includes("video");
  $("start").textContent = "Start " + [v && "camera", a && "microphone"].filter(Boolean).join(" + ");
  $("start").hidden = !(a || v);
  document.querySelector(".drop-hint").textContent = `drop ${v ? "an audio or video" : "an audio (or video)"} file here`;
  $("transcript-box").hidden = !mods.includes("text");
}

async function loadInfo() {
  const r = await authFetch("info");
  if (!r.ok) { status(r.status === 401 ? "wrong or missing API key: reload to enter it" : "no model: " + (await errorText(r))); return; }
  state.info = await r.json();
  const i = state.info;
  labelControls(i);
  $("model").textContent = `${i.model} · ${i.modalities.join(" + ")} · window ${i.window}s / hop ${i.hop}s · ` +
                           `budget ${i.latency_budget}s`;
  $("bars").innerHTML = i.labels.map((l) =>
    `<div class="name">${l}</div><div class="track"><div class="fill" id="bar-${l}" style="width:0;` +
    `background:${color(l)}"></div></div><div class="val" id="val-${l}">–</div>`).join("");
  $("legend").innerHTML = i.labels.map((l) => `<span><i style="background:${color(l)}"></i>${l}</span>`).join("") +
    `<span class="degraded"><i></i>window below full quality</span>`;
  drawTimeline();
}

function header(kind, t, payloadBytes) {
  const buf = new ArrayBuffer(9 + payloadBytes);
  const view = new DataView(buf);
  view.setUint8(0, kind.charCodeAt(0));
  view.setFloat64(1, t, true);
  return buf;
}

function openSocket(start) {
  return new Promise((resolve, reject) => {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}${location.pathname.replace(/\/[^/]*$/, "/")}ws`);
    ws.binaryType = "arraybuffer";
    const first = { ...start, ...(apiKey() ? { key: apiKey() } : {}), ...(transcript().trim() ? { text: transcript() } : {}) };
    ws.onopen = () => { ws.send(JSON.stringify(first)); resolve(ws); };
    ws.onerror = (e) => reject(e);
    ws.onmessage = (e) => onMessage(JSON.parse(e.data));
    ws.onclose = () => { status(state.summary ? "finished" : "disconnected"); stopCapture(); };
    state.ws = ws;
  });
}

function onMessage(msg) {
  if (msg.type === "window") { state.rows.push(msg); render(msg); }
  else if (msg.type === "summary") {
    state.summary = msg; window.liveSummary = msg;
    const l = msg.window_latency_ms;
    status(`finished: ${msg.windows} windows` + (l ? `, latency median ${l.median.toFixed(0)} ms` : ""));
  } else if (msg.type === "error") {
    const text = (msg.field ? msg.field + ": " : "") + msg.error;
    status("error: " + text); window.liveError = text;
  }
}

function render(row) {
  const p = row.probabilities;
  $("label").textContent = row.label || "–";
  $("label").style.color = row.label ? color(row.label) : "";
  $("window").textContent = `window ${row.window} · ${row.start.toFixed(1)}–${row.end.toFixed(1)} s`;
  $("mods").innerHTML = state.info.modalities.map((m) =>
    `<span class="${row.modalities.includes(m) ? "on" : ""}" title="${row.missing[m] || "used"}">${m}</span>`).join("");
  for (const l of state.info.labels) {
    const v = p ? p[l] : 0;
    $("bar-" + l).style.width = (100 * v).toFixed(1) + "%";
    $("val-" + l).textContent = p ? v.toFixed(2) : "–";
  }
  $("latency").textContent = row.latency_ms.toFixed(0);
  $("lag").textContent = row.lag_ms === undefined ? "–" : row.lag_ms.toFixed(0);
  $("quality").textContent = `${row.quality.level} · ${row.quality.name}`;
  $("count").textContent = state.rows.length;
  drawTimeline();
}

function drawTimeline() {
  const c = $("timeline"), g = c.getContext("2d");
  const w = c.width = c.clientWidth * devicePixelRatio, h = c.height = c.clientHeight * devicePixelRatio;
  g.clearRect(0, 0, w, h);
  g.strokeStyle = "#263047"; g.lineWidth = 1;
  for (let k = 1; k < 4; k++) { g.beginPath(); g.moveTo(0, h * k / 4); g.lineTo(w, h * k / 4); g.stroke(); }
  const rows = state.rows.filter((r) => r.probabilities);
  if (!rows.length || !state.info) return;
  const tEnd = Math.max(60, rows[rows.length - 1].end), t0 = tEnd - 60;
  const x = (t) => (t - t0) / 60 * w, y = (v) => h - 4 - v * (h - 8);
  g.fillStyle = "#8b95a8"; g.font = `${11 * devicePixelRatio}px system-ui`;
  for (let s = Math.ceil(t0 / 10) * 10; s <= tEnd; s += 10) g.fillText(`${s}s`, x(s) + 3, h - 5);
  g.lineWidth = 2 * devicePixelRatio;
  for (const l of state.info.labels) {
    g.strokeStyle = color(l); g.beginPath();
    rows.filter((r) => r.end >= t0).forEach((r, i) => {
      const px = x((r.start + r.end) / 2), py = y(r.probabilities[l]);
      i ? g.lineTo(px, py) : g.moveTo(px, py);
    });
    g.stroke();
  }
  rows.filter((r) => r.end >= t0 && r.quality.level > 0).forEach((r) => {   // degraded windows
    g.fillStyle = "rgba(255,169,77,0.6)"; g.fillRect(x(r.start + (r.end - r.start) / 2) - 2, 0, 4, 6);
  });
}

async function startLive() {
  if (!state.info) return;
  const wantAudio = state.info.modalities.includes("audio"), wantVideo = state.info.modalities.includes("video");
  try {
    state.media = await navigator.mediaDevices.getUserMedia({ audio: wantAudio, video: wantVideo && { width: 640, height: 480 } });
  } catch (e) { status("camera/microphone not available: " + e.message); return; }
  const hasAudio = state.media.getAudioTracks().length > 0, hasVideo = state.media.getVideoTracks().length > 0;
  $("video").srcObject = state.media;
  state.rows.length = 0; state.summary = null;
  const ws = await openSocket({ type: "start", audio: hasAudio, video: hasVideo });
  const t0 = performance.now();
  if (hasAudio) {
    const ctx = state.audioCtx = new AudioContext({ sampleRate: state.info.sample_rate });
    const src = ctx.createMediaStreamSource(state.media);
    const proc = ctx.createScriptProcessor(AUDIO_BLOCK, 1, 1);
    const mute = ctx.createGain(); mute.gain.value = 0;
    let sent = 0;
    proc.onaudioprocess = (e) => {
      const pcm = e.inputBuffer.getChannelData(0);
      const buf = header("a", sent / ctx.sampleRate, pcm.length * 4);
      new Uint8Array(buf, 9).set(new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength));
      sent += pcm.length;
      if (ws.readyState === 1) ws.send(buf);
    };
    src.connect(proc); proc.connect(mute); mute.connect(ctx.destination);
  }
  if (hasVideo) {
    const video = $("video"), canvas = document.createElement("canvas");
    state.timer = setInterval(() => {
      if (!video.videoWidth || ws.readyState !== 1) return;
      const t = (performance.now() - t0) / 1000;
      canvas.width = JPEG_WIDTH; canvas.height = Math.round(JPEG_WIDTH * video.videoHeight / video.videoWidth);
      canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
      canvas.toBlob(async (blob) => {
        const jpeg = new Uint8Array(await blob.arrayBuffer());
        const buf = header("v", t, jpeg.length);
        new Uint8Array(buf, 9).set(jpeg);
        if (ws.readyState === 1) ws.send(buf);
      }, "image/jpeg", 0.85);
    }, 1000 / FPS);
  }
  $("start").disabled = true; $("stop").disabled = false;
  status(`streaming ${[hasAudio && "microphone", hasVideo && "camera"].filter(Boolean).join(" + ")}`);
}

function stopCapture() {
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
  if (state.audioCtx) state.audioCtx.close();
  state.audioCtx = null;
  if (state.media) state.media.getTracks().forEach((t) => t.stop());
  state.media = null;
  $("start").disabled = false; $("stop").disabled = true;
}

function stopLive() {
  stopCapture();
  if (state.ws && state.ws.readyState === 1) { state.ws.send(JSON.stringify({ type: "stop" })); status("finishing…"); }
}
window.liveStop = stopLive;

async function streamFile(file) {
  if (!state.info || !file) return;
  stopLive();
  status(`uploading ${file.name}…`);
  const form = new FormData(); form.append("file", file);
  const r = await authFetch("upload", { method: "POST", body: form });
  if (!r.ok) { status("upload failed: " + (await errorText(r))); return; }
  const { id } = await r.json();
  state.rows.length = 0; state.summary = null;
  const video = $("video"); video.srcObject = null; video.src = URL.createObjectURL(file);
  await openSocket({ type: "start", file: id });
  video.play().catch(() => {});
  $("stop").disabled = false;
  status(`streaming ${file.name}`);
}

$("transcript").onchange = () => {      // a new transcript from now on (live streams)
  if (state.ws && state.ws.readyState === 1 && state.media) state.ws.send(JSON.stringify({ type: "text", text: transcript() }));
};
$("start").onclick = startLive;
$("stop").onclick = stopLive;
$("file").onchange = (e) => streamFile(e.target.files[0]);
const drop = $("drop");
drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
drop.ondragleave = () => drop.classList.remove("over");
drop.ondrop = (e) => { e.preventDefault(); drop.classList.remove("over"); streamFile(e.dataTransfer.files[0]); };
window.addEventListener("resize", drawTimeline);
loadInfo();
