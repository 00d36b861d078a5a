// The History tab: a chart per numeric camera region (values over time, rejected readings marked) and
// its CSV, from GET /api/history. Plain inline SVG drawn here: no chart library, no CDN (the device may
// be offline, and the CSP allows scripts from this origin only). Colours are SVG attributes, not inline
// styles, which the CSP refuses.
"use strict";

(() => {
  const SVG = "http://www.w3.org/2000/svg";
  const RANGES = { "24h": 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };
  const W = 720, H = 240, M = { left: 64, right: 16, top: 14, bottom: 40 };
  const LINE = "#0a66c2", REJECTED = "#cf222e", GRID = "#d0d7de", TEXT = "#667";
  const state = { range: "24h", charts: {}, loaded: 0, error: null };
  window.edgeOcrHistory = state; // read by the browser test and handy in the console

  const $ = (id) => document.getElementById(id);

  function headers() {
    const token = ($("token") || { value: "" }).value.trim();
    return token ? { Authorization: "Bearer " + token } : {};
  }

  function el(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function html(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Round numbers for an axis: about `n` steps of 1, 2 or 5 times a power of ten.
  function ticks(lo, hi, n) {
    const raw = (hi - lo) / n;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= raw) || raw;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
    return out;
  }

  function timeLabel(ms, step) {
    const d = new Date(ms);
    const pad = (x) => String(x).padStart(2, "0");
    const hm = pad(d.getHours()) + ":" + pad(d.getMinutes()) + (step < 60e3 ? ":" + pad(d.getSeconds()) : "");
    return step < 86400e3 && d.getHours() + d.getMinutes() + d.getSeconds() > 0 ? hm : (d.getMonth() + 1) + "/" + d.getDate();
  }

  // A time step giving about five ticks over `span` ms, on round clock values.
  const STEPS = [10e3, 30e3, 60e3, 300e3, 900e3, 3600e3, 4 * 3600e3, 6 * 3600e3, 86400e3, 2 * 86400e3, 5 * 86400e3];
  function timeStep(span) {
    return STEPS.find((s) => span / s <= 7) || STEPS[STEPS.length - 1];
  }

  // One region's readings -> an <svg>: valid values as a line with points, rejected ones as red crosses
  // on the bottom edge (their text was refused, so it has no place on the value axis). The time axis
  // ends now and starts at the range's start, or at the first reading when the region is younger than
  // the range (a new meter is not a dot at the right edge of 30 days).
  function chart(readings, rangeStart, until) {
    const firstAt = Math.min(...readings.map((r) => Date.parse(r.time)));
    const since = Math.max(rangeStart, firstAt - Math.max(0.05 * (until - firstAt), 1e3));
    const valid = readings.filter((r) => r.valid && r.value !== null);
    const rejected = readings.filter((r) => !r.valid);
    const values = valid.map((r) => r.value);
    let lo = values.length ? Math.min(...values) : 0, hi = values.length ? Math.max(...values) : 1;
    const pad = (hi - lo) * 0.08 || Math.max(Math.abs(hi) * 0.01, 0.5);
    lo -= pad; hi += pad;
    const pw = W - M.left - M.right, ph = H - M.top - M.bottom;
    const x = (t) => M.left + ((t - since) / (until - since)) * pw;
    const y = (v) => M.top + (1 - (v - lo) / (hi - lo)) * ph;
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "history-chart", role: "img" });
    svg.appendChild(el("rect", { x: M.left, y: M.top, width: pw, height: ph, fill: "#fff", stroke: GRID }));
    for (const v of ticks(lo, hi, 5)) {
      svg.appendChild(el("line", { x1: M.left, x2: M.left + pw, y1: y(v), y2: y(v), stroke: GRID, "stroke-dasharray": "2 3" }));
      svg.appendChild(el("text", { x: M.left - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: TEXT }, String(v)));
    }
    const step = timeStep(until - since);
    // Ticks on round local times (midnight for days): from local midnight before `since`, in steps.
    const day0 = new Date(since); day0.setHours(0, 0, 0, 0);
    const start = day0.getTime() + Math.ceil((since - day0.getTime()) / step) * step;
    for (let t = start; t < until; t += step) {
      svg.appendChild(el("line", { x1: x(t), x2: x(t), y1: M.top + ph, y2: M.top + ph + 4, stroke: TEXT }));
      svg.appendChild(el("text", { x: x(t), y: M.top + ph + 17, "text-anchor": "middle", "font-size": 11, fill: TEXT }, timeLabel(t, step)));
    }
    const at = (r) => Date.parse(r.time);
    if (valid.length > 1) {
      const points = valid.map((r) => x(at(r)).toFixed(1) + "," + y(r.value).toFixed(1)).join(" ");
      svg.appendChild(el("polyline", { points, fill: "none", stroke: LINE, "stroke-width": 1.5, class: "history-line" }));
    }
    const unit = (r) => (r.unit ? " " + r.unit : "");
    for (const r of valid) {
      const dot = el("circle", { cx: x(at(r)), cy: y(r.value), r: 3, fill: LINE, class: "history-point" });
      dot.appendChild(el("title", {}, r.time + ": " + r.value + unit(r)));
      svg.appendChild(dot);
    }
    const base = M.top + ph - 7;
    for (const r of rejected) {
      const cx = x(at(r));
      const mark = el("path", {
        d: `M${cx - 5},${base - 5} L${cx + 5},${base + 5} M${cx - 5},${base + 5} L${cx + 5},${base - 5}`,
        stroke: REJECTED, "stroke-width": 2, class: "history-rejected",
      });
      mark.appendChild(el("title", {}, r.time + ": read " + JSON.stringify(r.text) + ", rejected (" + (r.reason || "?") + ")"));
      svg.appendChild(mark);
    }
    return { svg, points: valid.length, rejected: rejected.length };
  }

  function csvLink(source, region, since) {
    const params = new URLSearchParams({ source, region, since: new Date(since).toISOString(), format: "csv", limit: "100000" });
    const a = html("a", "history-csv", "Download CSV");
    a.href = "/api/history?" + params;
    a.download = "history-" + source + "-" + region + ".csv";
    // A link cannot send the bearer token: with one, fetch the file and hand it over as a blob.
    a.addEventListener("click", async (event) => {
      const h = headers();
      if (!h.Authorization) return;
      event.preventDefault();
      const response = await fetch(a.href, { headers: h });
      if (!response.ok) return;
      const url = URL.createObjectURL(await response.blob());
      const tmp = html("a");
      tmp.href = url;
      tmp.download = a.download;
      tmp.click();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    });
    return a;
  }

  async function refresh() {
    const box = $("history-charts");
    if (!box) return;
    const until = Date.now();
    const since = until - RANGES[state.range];
    const params = new URLSearchParams({ since: new Date(since).toISOString(), limit: "100000" });
    let body;
    try {
      const response = await fetch("/api/history?" + params, { headers: headers() });
      body = await response.json();
      if (!response.ok) {
        state.error = body && body.error ? body.error.message : response.statusText;
        $("history-note").textContent = response.status === 401 ? "This device needs a token: enter it at the top right." : state.error;
        box.replaceChildren();
        return;
      }
    } catch (err) {
      state.error = String(err);
      $("history-note").textContent = "The device did not answer: " + err;
      return;
    }
    state.error = null;
    const groups = new Map();
    for (const r of body.readings) {
      const key = r.source + "\u0000" + r.region;
      if (!groups.has(key)) groups.set(key, { source: r.source, region: r.region, readings: [] });
      groups.get(key).readings.push(r);
    }
    // A region is numeric when it published a number or a unit: its readings are charted.
    const numeric = [...groups.values()].filter((g) => g.readings.some((r) => r.value !== null || r.unit));
    state.charts = {};
    const cards = numeric.map((g) => {
      const drawn = chart(g.readings, since, until);
      state.charts[g.source + "/" + g.region] = { points: drawn.points, rejected: drawn.rejected };
      const card = html("div", "history-card");
      card.dataset.source = g.source;
      card.dataset.region = g.region;
      const last = g.readings.filter((r) => r.valid && r.value !== null).pop();
      const unit = last && last.unit ? " " + last.unit : "";
      const title = html("h3", "", g.source + " / " + g.region + (last ? ": " + last.value + unit : ""));
      const info = html("p", "muted", drawn.points + " values, " + drawn.rejected + " rejected readings (red crosses) ");
      info.appendChild(csvLink(g.source, g.region, since));
      card.append(title, info, drawn.svg);
      return card;
    });
    box.replaceChildren(...cards);
    $("history-note").textContent = numeric.length ? (body.truncated ? "Only the newest " + body.count + " readings are shown." : "")
      : "No numeric readings in this range yet.";
    state.loaded += 1;
  }

  document.addEventListener("DOMContentLoaded", () => {
    const tab = document.querySelector('.tab[data-tab="history"]');
    if (!tab) return;
    tab.addEventListener("click", refresh);
    document.querySelectorAll("#history-range button").forEach((b) => b.addEventListener("click", () => {
      state.range = b.dataset.range;
      document.querySelectorAll("#history-range button").forEach((o) => o.classList.toggle("active", o === b));
      refresh();
    }));
    setInterval(() => { if (!$("tab-history").hidden) refresh(); }, 30000);
  });
})();
