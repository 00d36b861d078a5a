// edge-ocr's page: try an image (boxes drawn in the browser from the JSON), watch the sources, status.
// No framework, no CDN: the device may be offline, and the CSP allows scripts from this origin only.
"use strict";

const $ = (id) => document.getElementById(id);
const BOX = "#ff0080";
const HIGHLIGHT = "#00c853";
const state = { result: null, bitmap: null, hover: -1 };
window.edgeOcr = state; // read by the browser test and handy in the console

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const token = $("token").value.trim();
  if (token) h["Authorization"] = "Bearer " + token;
  return h;
}

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = headers(opts.headers);
  return fetch(path, opts);
}

// ------------------------------------------------------------------------------------ try it

const MESSAGES = {
  400: "The image could not be read (empty, truncated or corrupt).",
  401: "This device needs a token: enter it at the top right.",
  413: "The image is too large for this device",
  415: "This type of file is not read here: use JPEG, PNG, BMP, TIFF or WebP.",
  422: "An option was refused",
  429: "The device is busy reading other images; try again in a few seconds.",
  503: "The OCR engine is not ready yet (loading its models); try again shortly.",
  504: "The device did not finish in time (it is busy); try again.",
};

function showMessage(text, isError) {
  const m = $("message");
  m.textContent = text;
  m.className = "message" + (isError ? " error" : "");
  m.hidden = !text;
}

async function readFile(file) {
  if (!file) return;
  showMessage("Reading " + (file.name || "the pasted image") + "…", false);
  $("result").hidden = true;
  const params = new URLSearchParams();
  if ($("opt-line").checked) params.set("line", "true");
  if ($("opt-min").value !== "") params.set("min_confidence", $("opt-min").value);
  const type = file.type && file.type.startsWith("image/") ? file.type : "application/octet-stream";
  let response;
  const started = performance.now();
  try {
    response = await api("/api/ocr" + (params.toString() ? "?" + params : ""), {
      method: "POST", body: file, headers: { "Content-Type": type },
    });
  } catch (err) {
    showMessage("The device did not answer: " + err, true);
    return;
  }
  let body = null;
  try { body = await response.json(); } catch (err) { body = null; }
  if (!response.ok) {
    const detail = body && body.error ? body.error.message : response.statusText;
    let text = (MESSAGES[response.status] || "Error " + response.status) + " — " + detail;
    const retry = response.headers.get("Retry-After");
    if (response.status === 429 && retry) text += " (retry after " + retry + " s)";
    showMessage(text, true);
    return;
  }
  state.result = body;
  state.roundTripMs = performance.now() - started;
  // The browser applies EXIF orientation when it decodes (as the server did): the bitmap then has the
  // server's width x height, and the boxes land where the text is.
  state.bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  // Lines the min confidence held back are named, so that an empty result is not taken for no text.
  const held = (body.rejected || []).map((r) => "\u201c" + r.text + "\u201d (" + r.detail + ")");
  const heldNote = held.length ? held.length + " line" + (held.length > 1 ? "s" : "") +
    " held back by the min confidence: " + held.join("; ") : "";
  showMessage(heldNote || (body.lines.length ? "" : "No text found."), false);
  render();
}

function draw() {
  const r = state.result;
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  canvas.width = r.width;
  canvas.height = r.height;
  ctx.drawImage(state.bitmap, 0, 0, r.width, r.height);
  const width = Math.max(2, Math.round(Math.max(r.width, r.height) / 400));
  r.lines.forEach((line, i) => {
    ctx.beginPath();
    line.box.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.closePath();
    ctx.lineWidth = i === state.hover ? width * 2 : width;
    ctx.strokeStyle = i === state.hover ? HIGHLIGHT : BOX;
    if (i === state.hover) {
      ctx.fillStyle = "rgba(0, 200, 83, 0.18)";
      ctx.fill();
    }
    ctx.stroke();
  });
}

function copy(text) {
  if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
  const area = document.createElement("textarea"); // plain http on a LAN address: the old way
  area.value = text;
  document.body.appendChild(area);
  area.select();
  document.execCommand("copy");
  area.remove();
  return Promise.resolve();
}

function render() {
  const r = state.result;
  $("result").hidden = false;
  draw();
  const list = $("lines");
  list.replaceChildren();
  r.lines.forEach((line, i) => {
    const li = document.createElement("li");
    li.dataset.index = String(i);
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = line.text;
    const conf = document.createElement("span");
    conf.className = "conf" + (line.confidence < 0.8 ? " low" : "");
    conf.textContent = (line.confidence * 100).toFixed(1) + "%";
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "copy";
    button.addEventListener("click", () => copy(line.text));
    li.append(text, conf, button);
    li.addEventListener("mouseenter", () => { state.hover = i; li.classList.add("hover"); draw(); });
    li.addEventListener("mouseleave", () => { state.hover = -1; li.classList.remove("hover"); draw(); });
    list.appendChild(li);
  });
  const t = r.timings_ms || {};
  const parts = ["det", "cls", "rec", "total", "decode", "queue"].filter((k) => k in t)
    .map((k) => k + " " + Math.round(t[k]) + " ms");
  $("timings").textContent = r.width + "×" + r.height + " px, " + r.lines.length + " lines; " + parts.join(", ")
    + "; round trip " + Math.round(state.roundTripMs) + " ms" + (r.cached ? " (cached)" : "");
}

function setupTry() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => readFile(e.target.files[0]));
  ["dragenter", "dragover"].forEach((ev) => drop.addEventListener(ev, (e) => {
    e.preventDefault(); drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((ev) => drop.addEventListener(ev, (e) => {
    e.preventDefault(); drop.classList.remove("over");
  }));
  drop.addEventListener("drop", (e) => readFile(e.dataTransfer.files[0]));
  document.addEventListener("paste", (e) => {
    const item = Array.from(e.clipboardData.items).find((it) => it.kind === "file");
    if (item) readFile(item.getAsFile());
  });
  $("copy-all").addEventListener("click", () => state.result && copy(state.result.text));
  $("download").addEventListener("click", () => {
    if (!state.result) return;
    const blob = new Blob([JSON.stringify(state.result, null, 2)], { type: "application/json" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "edge-ocr-" + state.result.request_id + ".json";
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  });
}

// ------------------------------------------------------------------------------------ watch it

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

async function drawCamera(name, view, box) {
  const response = await api("/api/cameras/" + encodeURIComponent(name) + "/frame.jpg?frame=" + view.frame);
  if (!response.ok) {
    box.replaceChildren(element("p", "muted", "No frame analysed yet."));
    return;
  }
  const bitmap = await createImageBitmap(await response.blob());
  const canvas = element("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  canvas.dataset.frame = String(view.frame);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  ctx.lineWidth = Math.max(2, Math.round(bitmap.width / 320));
  ctx.font = Math.max(12, Math.round(bitmap.width / 40)) + "px sans-serif";
  for (const r of view.regions) {
    if (!r.quad) continue;
    ctx.strokeStyle = r.valid === false ? "#cf222e" : BOX;
    ctx.beginPath();
    r.quad.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.closePath();
    ctx.stroke();
    ctx.fillStyle = ctx.strokeStyle;
    ctx.fillText(r.name + (r.text ? ": " + r.text : ""), r.quad[0][0] + 4, Math.max(14, r.quad[0][1] - 4));
  }
  box.replaceChildren(canvas);
}

function regionTable(view) {
  const table = element("table", "kv");
  const head = element("tr");
  ["region", "reading", "valid", "published", "at"].forEach((h) => head.appendChild(element("th", "", h)));
  table.appendChild(head);
  for (const r of view.regions) {
    const tr = element("tr");
    tr.appendChild(element("td", "", r.name));
    tr.appendChild(element("td", "", r.text === null ? "—" : r.text));
    const verdict = r.valid === null ? "—" : r.valid ? "yes" : "no" + (r.reason ? " (" + r.reason + ")" : "");
    tr.appendChild(element("td", r.valid === false ? "invalid" : "valid", verdict));
    const pub = r.published;
    const shown = pub && pub.value !== undefined && pub.value !== null ? pub.value + (pub.unit ? " " + pub.unit : "") : pub ? pub.text : "—";
    tr.appendChild(element("td", "", shown));
    tr.appendChild(element("td", "", r.published ? r.published.captured_at : view.captured_at || "—"));
    table.appendChild(tr);
  }
  return table;
}

async function refreshWatch() {
  const response = await api("/api/sources");
  if (!response.ok) return;
  const sources = (await response.json()).sources;
  const cameras = $("cameras");
  const folders = $("folders");
  const names = Object.keys(sources);
  $("no-sources").hidden = names.length > 0;
  for (const name of names) {
    const s = sources[name];
    const id = "source-" + name.replace(/[^A-Za-z0-9_-]/g, "_");
    let card = document.getElementById(id);
    if (!card) {
      card = element("div", s.type === "camera" ? "camera" : "folder");
      card.id = id;
      (s.type === "camera" ? cameras : folders).appendChild(card);
    }
    const title = element("h3", "", name + " (" + s.type + ")");
    if (s.type === "camera") {
      const v = s.view;
      const info = element("p", "muted", s.state + ", " + s.frames_analysed + " frames analysed"
        + (v.captured_at ? ", last at " + v.captured_at : "") + (s.last_error ? "; last error: " + s.last_error : ""));
      const frame = card.querySelector(".frame") || element("div", "frame");
      if (frame.dataset.frame !== String(v.frame)) {
        frame.dataset.frame = String(v.frame);
        await drawCamera(name, v, frame);
      }
      card.replaceChildren(title, info, frame, regionTable(v));
    } else {
      const counts = element("p", "muted", ["done", "failed", "in_flight", "pending", "mode"]
        .filter((k) => k in s).map((k) => k + " " + s[k]).join(", "));
      const list = element("table", "kv");
      for (const r of s.recent || []) {
        const tr = element("tr");
        tr.appendChild(element("td", "", r.processed_at));
        tr.appendChild(element("td", "", r.file));
        tr.appendChild(element("td", r.ok ? "valid" : "invalid", r.ok ? r.lines + " lines" : "failed"));
        tr.appendChild(element("td", "", r.ok ? (r.text || "").slice(0, 120) : r.error));
        list.appendChild(tr);
      }
      card.replaceChildren(title, counts, list);
    }
  }
}

// ------------------------------------------------------------------------------------ status

function fmtUptime(s) {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return (d ? d + "d " : "") + h + "h " + m + "m";
}

async function refreshStatus() {
  let st;
  try {
    const response = await api("/api/status");
    if (response.status === 401) { $("status-line").textContent = "token needed"; return; }
    st = await response.json();
  } catch (err) {
    $("status-line").textContent = "device not answering";
    return;
  }
  const model = st.model || {};
  const roles = ["det", "rec", "cls"].filter((r) => model[r]).map((r) => r + " " + model[r].precision);
  $("status-line").textContent = "v" + st.version + " · " + (model.set || "models loading") + " (" + roles.join(", ")
    + ") · up " + fmtUptime(st.uptime_s || 0);
  const rows = [
    ["version", st.version],
    ["mode", st.mode || "daemon"],
    ["model set", model.set || "loading"],
  ];
  for (const r of ["det", "rec", "cls"]) {
    if (model[r]) rows.push([r, model[r].precision + " — " + model[r].file + " (" + model[r].why + ")"]);
  }
  if ("outbox_depth" in st) rows.push(["outbox depth", st.outbox_depth + (st.outbox_full ? " (full)" : "")]);
  if (st.broker) rows.push(["broker", st.broker.connected ? "connected" : "not connected: " + (st.broker.last_error || "connecting")]);
  if ("degraded" in st) rows.push(["degraded", st.degraded ? "yes: " + st.reason : "no"]);
  if ("processed" in st) rows.push(["files", st.processed + " processed, " + st.failed + " failed"]);
  if (st.api) rows.push(["API", st.api.pending + " in hand of " + st.api.capacity + ", cache " + st.api.cache_entries + " entries, " + st.api.cache_hits + " hits"]);
  rows.push(["uptime", fmtUptime(st.uptime_s || 0)]);
  const table = $("status-table");
  table.replaceChildren(...rows.map(([k, v]) => {
    const tr = element("tr");
    tr.append(element("th", "", k), element("td", "", String(v)));
    return tr;
  }));
}

// ------------------------------------------------------------------------------------ wiring

function setupTabs() {
  document.querySelectorAll(".tab").forEach((tab) => tab.addEventListener("click", () => {
    document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t === tab));
    document.querySelectorAll(".panel").forEach((p) => { p.hidden = p.id !== "tab-" + tab.dataset.tab; });
    if (tab.dataset.tab === "watch") refreshWatch();
    if (tab.dataset.tab === "status") refreshStatus();
  }));
}

document.addEventListener("DOMContentLoaded", () => {
  const token = $("token");
  token.value = sessionStorage.getItem("edge-ocr-token") || "";
  token.addEventListener("change", () => { sessionStorage.setItem("edge-ocr-token", token.value); refreshStatus(); });
  setupTabs();
  setupTry();
  refreshStatus();
  setInterval(refreshStatus, 10000);
  setInterval(() => { if (!$("tab-watch").hidden) refreshWatch(); }, 3000);
});
