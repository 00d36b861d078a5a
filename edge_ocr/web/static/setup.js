// edge-ocr's Setup tab: a camera's regions and alignment patches drawn, moved and resized on its live
// frame, their options set, a region tested on the current frame, and the configuration saved (validated,
// written with its comments, reloaded). Uses app.js's api() (the token) and element().
// Coordinates are frame pixels, as in the configuration (regions are cut from the aligned frame).
"use strict";

(() => {
  const REGION = "#ff0080";
  const PATCH = "#00a3d9";
  const SELECTED = "#00c853";
  const HANDLE = 10; // px on screen
  const s = {
    doc: null, // the configuration file's document (GET /api/config); edited in place, PUT on Save
    source: null, // the camera source's name
    selected: null, // {kind: "region"|"patch", index}
    drawing: null, // "region" | "patch" while the next drag draws one
    drag: null,
    bitmap: null,
    frame: -1,
    view: null, // GET /api/cameras/{source}: the daemon's latest readings
    test: null, // the last test's answer
    saved: null, // the last Save's answer
    timer: null,
  };
  window.edgeOcrSetup = s; // read by the browser test

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => element(tag, cls, text);

  function camera() {
    return s.doc ? (s.doc.sources || []).find((x) => x.name === s.source && x.type === "camera") : null;
  }
  function regions() { const c = camera(); return c ? (c.regions = c.regions || []) : []; }
  function patches() {
    const c = camera();
    if (!c) return [];
    return c.alignment ? c.alignment.patches : [];
  }
  function item(sel) {
    if (!sel) return null;
    return sel.kind === "region" ? regions()[sel.index] : { box: patches()[sel.index] };
  }

  function say(text, kind) {
    const m = $("setup-message");
    m.replaceChildren();
    if (Array.isArray(text)) {
      const ul = el("ul", "problems");
      text.forEach((t) => ul.appendChild(el("li", "", t)));
      m.appendChild(ul);
    } else {
      m.textContent = text || "";
    }
    m.className = "message" + (kind === "error" ? " error" : kind === "ok" ? " ok" : "");
    m.hidden = !text || (Array.isArray(text) && !text.length);
  }

  async function errorText(response) {
    let body = null;
    try { body = await response.json(); } catch (err) { body = null; }
    if (response.status === 401) return ["This device needs a token: enter it at the top right."];
    if (!body || !body.error) return ["Error " + response.status];
    const p = body.error.problems;
    if (p && p.length) return p.map((x) => (x.key ? x.key + ": " : "") + x.message + (x.line ? " (line " + x.line + ")" : ""));
    return [body.error.message];
  }

  // ------------------------------------------------------------------ geometry

  function corners(r) {
    if (r.polygon) return r.polygon.map((p) => [p[0], p[1]]);
    const [x, y, w, h] = r.box;
    return [[x, y], [x + w, y], [x + w, y + h], [x, y + h]];
  }

  function toFrame(e) {
    const c = $("setup-canvas");
    const rect = c.getBoundingClientRect();
    return [(e.clientX - rect.left) * c.width / rect.width, (e.clientY - rect.top) * c.height / rect.height];
  }

  function scale() {
    const c = $("setup-canvas");
    return c.width / Math.max(1, c.getBoundingClientRect().width);
  }

  function inside(pts, [x, y]) {
    let hit = false;
    for (let i = 0, j = pts.length - 1; i < pts.length; j = i++) {
      const [xi, yi] = pts[i], [xj, yj] = pts[j];
      if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) hit = !hit;
    }
    return hit;
  }

  function hitTest(p) {
    const tol = HANDLE * scale();
    const all = regions().map((r, i) => ({ kind: "region", index: i, pts: corners(r) }))
      .concat(patches().map((b, i) => ({ kind: "patch", index: i, pts: corners({ box: b }) })));
    // the selected item's corners first, then any body, the last drawn on top
    for (const it of all) {
      if (!s.selected || it.kind !== s.selected.kind || it.index !== s.selected.index) continue;
      const k = it.pts.findIndex(([x, y]) => Math.abs(x - p[0]) <= tol && Math.abs(y - p[1]) <= tol);
      if (k >= 0) return { ...it, corner: k };
    }
    for (const it of all.reverse()) if (inside(it.pts, p)) return { ...it, corner: -1 };
    return null;
  }

  function setBox(sel, box) {
    const b = box.map((v) => Math.max(0, Math.round(v)));
    b[2] = Math.max(2, b[2]); b[3] = Math.max(2, b[3]);
    if (sel.kind === "region") regions()[sel.index].box = b; else patches()[sel.index] = b;
  }

  function onDown(e) {
    if (!s.bitmap) return;
    const p = toFrame(e);
    if (s.drawing) {
      s.drag = { mode: "draw", start: p, kind: s.drawing };
      return;
    }
    const hit = hitTest(p);
    s.selected = hit ? { kind: hit.kind, index: hit.index } : null;
    if (hit) s.drag = { mode: hit.corner >= 0 ? "corner" : "move", corner: hit.corner, start: p,
      pts: hit.pts.map((q) => q.slice()), sel: s.selected };
    renderAll();
  }

  function onMove(e) {
    if (!s.drag) return;
    const p = toFrame(e);
    const d = s.drag;
    if (d.mode === "draw") { d.end = p; draw(); return; }
    const dx = p[0] - d.start[0], dy = p[1] - d.start[1];
    const it = item(d.sel);
    if (d.sel.kind === "region" && it.polygon) {
      it.polygon = d.pts.map((q, k) => (d.mode === "move" || k === d.corner
        ? [Math.round(q[0] + dx), Math.round(q[1] + dy)] : [q[0], q[1]]));
    } else if (d.mode === "move") {
      const [x0, y0] = d.pts[0], [x1, y1] = d.pts[2];
      setBox(d.sel, [x0 + dx, y0 + dy, x1 - x0, y1 - y0]);
    } else {
      const opposite = d.pts[(d.corner + 2) % 4];
      const moved = [d.pts[d.corner][0] + dx, d.pts[d.corner][1] + dy];
      setBox(d.sel, [Math.min(opposite[0], moved[0]), Math.min(opposite[1], moved[1]),
        Math.abs(opposite[0] - moved[0]), Math.abs(opposite[1] - moved[1])]);
    }
    draw();
  }

  function onUp(e) {
    const d = s.drag;
    s.drag = null;
    if (!d) return;
    if (d.mode === "draw") {
      const p = d.end || toFrame(e);
      const box = [Math.min(d.start[0], p[0]), Math.min(d.start[1], p[1]),
        Math.abs(p[0] - d.start[0]), Math.abs(p[1] - d.start[1])].map(Math.round);
      s.drawing = null;
      $("setup-canvas").classList.remove("drawing");
      if (box[2] < 4 || box[3] < 4) { draw(); return; }
      if (d.kind === "region") {
        const names = new Set(regions().map((r) => r.name));
        let n = regions().length + 1;
        while (names.has("region" + n)) n += 1;
        regions().push({ name: "region" + n, box });
        s.selected = { kind: "region", index: regions().length - 1 };
      } else {
        const c = camera();
        c.alignment = c.alignment || { patches: [] };
        c.alignment.patches.push(box);
        s.selected = { kind: "patch", index: c.alignment.patches.length - 1 };
      }
    }
    renderAll();
  }

  // ------------------------------------------------------------------ drawing

  function draw() {
    const c = $("setup-canvas");
    if (!s.bitmap) return;
    if (c.width !== s.bitmap.width || c.height !== s.bitmap.height) {
      c.width = s.bitmap.width; c.height = s.bitmap.height;
    }
    const ctx = c.getContext("2d");
    ctx.drawImage(s.bitmap, 0, 0);
    const lw = Math.max(2, Math.round(c.width / 400));
    ctx.font = Math.max(12, Math.round(c.width / 45)) + "px sans-serif";
    const shape = (pts, colour, label, selected) => {
      ctx.lineWidth = selected ? lw * 2 : lw;
      ctx.strokeStyle = selected ? SELECTED : colour;
      ctx.beginPath();
      pts.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.closePath();
      ctx.stroke();
      ctx.fillStyle = ctx.strokeStyle;
      if (label) ctx.fillText(label, pts[0][0] + 3, Math.max(14, pts[0][1] - 5));
      if (selected) {
        const h = HANDLE * scale() / 2;
        pts.forEach(([x, y]) => ctx.fillRect(x - h, y - h, 2 * h, 2 * h));
      }
    };
    const sel = s.selected;
    patches().forEach((b, i) => shape(corners({ box: b }), PATCH, "patch " + (i + 1),
      sel && sel.kind === "patch" && sel.index === i));
    regions().forEach((r, i) => shape(corners(r), REGION, r.name, sel && sel.kind === "region" && sel.index === i));
    const d = s.drag;
    if (d && d.mode === "draw" && d.end) {
      const [x0, y0] = d.start, [x1, y1] = d.end;
      shape([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], d.kind === "region" ? REGION : PATCH, "", false);
    }
  }

  // ------------------------------------------------------------------ the side panel

  function field(label, input) {
    const l = el("label", "field");
    l.append(el("span", "", label), input);
    return l;
  }
  function input(type, value, onChange, attrs) {
    const i = el("input");
    i.type = type;
    i.value = value === undefined || value === null ? "" : String(value);
    Object.assign(i, attrs || {});
    i.addEventListener("change", () => { onChange(i.value); renderAll(); });
    return i;
  }
  function select(options, value, onChange) {
    const sel = el("select");
    options.forEach((o) => { const opt = el("option", "", o); opt.value = o; sel.appendChild(opt); });
    sel.value = value;
    sel.addEventListener("change", () => { onChange(sel.value); renderAll(); });
    return sel;
  }
  function setOrDrop(obj, key, value) { if (value === "" || value === null) delete obj[key]; else obj[key] = value; }

  function renderList() {
    const list = $("setup-list");
    list.replaceChildren();
    const readings = {};
    for (const r of (s.view && s.view.regions) || []) readings[r.name] = r;
    regions().forEach((r, i) => {
      const li = el("li", s.selected && s.selected.kind === "region" && s.selected.index === i ? "selected" : "");
      li.dataset.region = r.name;
      const now = readings[r.name];
      const pub = now && now.published;
      const shown = pub ? (pub.value !== undefined && pub.value !== null ? pub.value + (pub.unit ? " " + pub.unit : "") : pub.text)
        : now && now.text ? now.text : "—";
      li.append(el("span", "name", r.name), el("span", "reading " + (now && now.valid === false ? "invalid" : "valid"), shown));
      li.addEventListener("click", () => { s.selected = { kind: "region", index: i }; renderAll(); });
      list.appendChild(li);
    });
    patches().forEach((b, i) => {
      const li = el("li", "patch" + (s.selected && s.selected.kind === "patch" && s.selected.index === i ? " selected" : ""),
        "alignment patch " + (i + 1) + ": [" + b.join(", ") + "]");
      li.addEventListener("click", () => { s.selected = { kind: "patch", index: i }; renderAll(); });
      list.appendChild(li);
    });
  }

  function renderForm() {
    const form = $("setup-form");
    form.replaceChildren();
    $("setup-test").hidden = !s.test || !s.selected || s.selected.kind !== "region";
    if (!s.selected) { form.appendChild(el("p", "muted", "Select a region or a patch on the frame, or add one.")); return; }
    const del = el("button", "", "Delete");
    del.type = "button";
    del.id = "setup-delete";
    if (s.selected.kind === "patch") {
      del.addEventListener("click", () => {
        const c = camera();
        c.alignment.patches.splice(s.selected.index, 1);
        if (!c.alignment.patches.length) delete c.alignment;
        s.selected = null; renderAll();
      });
      form.append(el("p", "", "Alignment patch: something fixed and textured (a label, a screw), away from the digits."), del);
      return;
    }
    const r = regions()[s.selected.index];
    const n = r.numeric || null;
    const kind = select(["numeric", "text"], n ? "numeric" : "text", (v) => {
      if (v === "numeric") r.numeric = r.numeric || {}; else delete r.numeric;
    });
    kind.id = "setup-kind";
    const name = input("text", r.name, (v) => { r.name = v.trim(); }, { id: "setup-name" });
    const charset = input("text", r.charset, (v) => setOrDrop(r, "charset", v), { id: "setup-charset", placeholder: n ? "digits" : "any" });
    const tilted = el("input");
    tilted.type = "checkbox";
    tilted.id = "setup-tilted";
    tilted.checked = Boolean(r.polygon);
    tilted.addEventListener("change", () => {
      if (tilted.checked) { r.polygon = corners(r); delete r.box; } else {
        const xs = r.polygon.map((p) => p[0]), ys = r.polygon.map((p) => p[1]);
        r.box = [Math.min(...xs), Math.min(...ys), Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys)].map(Math.round);
        delete r.polygon;
      }
      renderAll();
    });
    form.append(field("name", name), field("shows", kind), field("charset", charset), field("tilted (4 corners)", tilted));
    if (n) {
      form.append(
        field("decimals", input("number", n.decimals, (v) => setOrDrop(n, "decimals", v === "" ? "" : Number(v)), { id: "setup-decimals", min: 0, max: 9, placeholder: "read the point" })),
        field("monotonic", select(["none", "increasing", "decreasing"], n.monotonic || "none", (v) => setOrDrop(n, "monotonic", v === "none" ? "" : v))),
        field("unit", input("text", n.unit, (v) => setOrDrop(n, "unit", v), { id: "setup-unit", placeholder: "m³, kWh" })),
      );
    }
    const test = el("button", "primary", "Test on this frame");
    test.type = "button";
    test.id = "setup-test-button";
    test.addEventListener("click", () => testRegion(r));
    const actions = el("p", "actions");
    actions.append(test, del);
    del.addEventListener("click", () => { regions().splice(s.selected.index, 1); s.selected = null; s.test = null; renderAll(); });
    form.appendChild(actions);
    if (n) {
      const value = input("number", "", () => {}, { id: "setup-value", step: "any", placeholder: "the meter now" });
      const set = el("button", "", "Set remembered value");
      set.type = "button";
      set.addEventListener("click", () => setValue(r.name, value.value));
      const row = el("p", "actions");
      row.append(value, set);
      form.appendChild(row);
    }
  }

  function renderTest() {
    const t = s.test;
    const box = $("setup-test");
    if (!t) return;
    const img = el("img");
    img.alt = "the crop as the model sees it";
    img.src = "data:image/png;base64," + t.crop_png;
    const chars = el("div", "chars");
    Array.from(t.text).forEach((ch, k) => {
      const c = t.char_confidences[k];
      const span = el("span", "char" + (c !== undefined && c < 0.8 ? " low" : ""));
      span.append(el("b", "", ch), el("small", "", c === undefined ? "" : Math.round(c * 100) + "%"));
      chars.appendChild(span);
    });
    const value = t.value === null || t.value === undefined ? "" : " = " + t.value + (t.unit ? " " + t.unit : "");
    const verdict = el("p", t.valid ? "valid" : "invalid", t.valid ? "accepted by the rules"
      : "rejected: " + t.reason + (t.detail ? " — " + t.detail : ""));
    verdict.id = "setup-verdict";
    const text = el("p", "test-text");
    text.id = "setup-test-text";
    text.append(el("code", "", t.text || "(nothing read)"), document.createTextNode(value));
    box.replaceChildren(el("h4", "", "Test of " + t.region), img, text, chars, verdict);
    if (t.advice) {
      const advice = el("p", "advice", "Advice: " + t.advice);
      advice.id = "setup-advice";
      box.appendChild(advice);
    }
  }

  function renderAll() { draw(); renderList(); renderForm(); renderTest(); }

  // ------------------------------------------------------------------ talking to the device

  async function testRegion(r) {
    say("Testing " + r.name + "…");
    const response = await api("/api/sources/" + encodeURIComponent(s.source) + "/test", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ region: r }),
    });
    if (!response.ok) { s.test = null; say(await errorText(response), "error"); renderAll(); return; }
    s.test = await response.json();
    say("");
    renderAll();
  }

  async function setValue(region, value) {
    if (value === "") return;
    const response = await api("/api/sources/" + encodeURIComponent(s.source) + "/regions/" + encodeURIComponent(region) + "/value", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ value: Number(value) }),
    });
    say(response.ok ? region + " now remembers " + value : await errorText(response), response.ok ? "ok" : "error");
  }

  async function captureReference() {
    const response = await api("/api/sources/" + encodeURIComponent(s.source) + "/capture", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ reference: true }),
    });
    say(response.ok ? "The next frame becomes the alignment reference." : await errorText(response), response.ok ? "ok" : "error");
  }

  async function save() {
    say("Saving…");
    const response = await api("/api/config", {
      method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify(s.doc),
    });
    if (!response.ok) { say(await errorText(response), "error"); return; }
    s.saved = await response.json();
    if (s.saved.reloaded === "restarting") { say("Saved; the server restarts with its new settings: reload the page shortly.", "ok"); return; }
    say(s.saved.changed ? "Saved to " + s.saved.path + " (the old file is " + s.saved.backup + "); the daemon runs it now."
      : "Nothing changed.", "ok");
    await loadConfig();
    s.frame = -1;
  }

  async function loadConfig() {
    const response = await api("/api/config");
    if (!response.ok) { say(await errorText(response), "error"); return false; }
    const body = await response.json();
    if (!body.editable) { say("The daemon runs without a configuration file: start it with --config FILE to set it up here.", "error"); return false; }
    s.doc = body.config;
    const cams = (s.doc.sources || []).filter((x) => x.type === "camera").map((x) => x.name);
    const pick = $("setup-source");
    pick.replaceChildren(...cams.map((n) => { const o = el("option", "", n); o.value = n; return o; }));
    if (!cams.includes(s.source)) { s.source = cams[0] || null; s.selected = null; s.test = null; s.frame = -1; }
    pick.value = s.source || "";
    if (!cams.length) say("No camera source in the configuration.", "error");
    renderAll();
    return true;
  }

  async function refreshFrame() {
    if ($("tab-setup").hidden || !s.source) return;
    const response = await api("/api/cameras/" + encodeURIComponent(s.source));
    if (!response.ok) return;
    s.view = await response.json();
    $("setup-frame-info").textContent = s.view.frame ? "frame " + s.view.frame + " at " + s.view.captured_at : "no frame yet";
    if (s.view.frame && s.view.frame !== s.frame) {
      // aligned: the frame in the reference's coordinates, where regions are configured and read
      const img = await api("/api/cameras/" + encodeURIComponent(s.source) + "/frame.jpg?aligned=true&frame=" + s.view.frame);
      if (img.ok) {
        s.bitmap = await createImageBitmap(await img.blob());
        s.frame = s.view.frame;
      }
    }
    if (!s.drag) { draw(); renderList(); }
  }

  // ------------------------------------------------------------------ wiring

  function build() {
    const panel = $("tab-setup");
    const bar = el("div", "setup-bar");
    const pick = el("select");
    pick.id = "setup-source";
    pick.addEventListener("change", () => { s.source = pick.value; s.selected = null; s.test = null; s.frame = -1; refreshFrame(); });
    const button = (id, text, cls, onClick) => {
      const b = el("button", cls || "", text);
      b.type = "button"; b.id = id;
      b.addEventListener("click", onClick);
      return b;
    };
    const arm = (kind) => () => { s.drawing = kind; $("setup-canvas").classList.add("drawing"); say("Drag on the frame to draw the " + kind + "."); };
    bar.append(field("camera", pick), button("setup-add-region", "+ region", "", arm("region")),
      button("setup-add-patch", "+ alignment patch", "", arm("patch")),
      button("setup-reference", "Use the next frame as reference", "", captureReference),
      button("setup-save", "Save", "primary", save), el("span", "muted"));
    bar.lastChild.id = "setup-frame-info";
    const msg = el("p", "message");
    msg.id = "setup-message"; msg.hidden = true; msg.setAttribute("role", "status");
    const stage = el("div", "setup-stage");
    const canvas = el("canvas");
    canvas.id = "setup-canvas";
    stage.appendChild(canvas);
    const side = el("div", "setup-side");
    const list = el("ul", "setup-list"); list.id = "setup-list";
    const form = el("div", "setup-form"); form.id = "setup-form";
    const test = el("div", "setup-test"); test.id = "setup-test"; test.hidden = true;
    side.append(list, form, test);
    const grid = el("div", "setup-grid");
    grid.append(stage, side);
    panel.replaceChildren(bar, msg, grid);
    canvas.addEventListener("pointerdown", (e) => { canvas.setPointerCapture(e.pointerId); onDown(e); });
    canvas.addEventListener("pointermove", onMove);
    canvas.addEventListener("pointerup", onUp);
  }

  document.addEventListener("DOMContentLoaded", () => {
    build();
    const tab = document.querySelector("button[data-tab=setup]");
    tab.addEventListener("click", async () => {
      if (!s.doc) await loadConfig();
      refreshFrame();
    });
    // the live frame: at least once a second while the tab is open (a frame is fetched only when new)
    s.timer = setInterval(refreshFrame, 500);
  });
})();
