// One chart of many curves: uPlot in "mode 2" (every series has its own x values, so
// downsampled curves need no shared x axis), canvas only: no DOM element per series.
// Hover finds the nearest point of any series and moves ONE marker; bands of groups are
// painted on the canvas under the lines; zooming refetches the visible range; running
// runs append points with a per-series `since` cursor.

import { getArrow, streamArrow, tableMeta } from "./api.js";
import { withAlpha } from "./colors.js";
import { formatNumber } from "./format.js";

const Y_DISTR = { linear: 1, log: 3, asinh: 4 };

// Split the flat Arrow columns into per-series arrays (points of a series are contiguous).
export function splitSeries(table, count) {
  const sid = table.getChild("series").toArray();
  const cols = {};
  for (const name of ["x", "y", "lo", "hi", "step"]) {
    const c = table.getChild(name);
    if (c) cols[name] = c.toArray();
  }
  const out = Array.from({ length: count }, () => null);
  let start = 0;
  for (let i = 1; i <= sid.length; i++) {
    if (i === sid.length || sid[i] !== sid[start]) {
      const part = {};
      for (const [k, arr] of Object.entries(cols)) part[k] = arr.subarray(start, i);
      out[sid[start]] = part;
      start = i;
    }
  }
  return out;
}

function concatTyped(a, b) {
  const out = new Float64Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function lowerBound(arr, v) {
  let lo = 0, hi = arr.length;
  while (lo < hi) { const m = (lo + hi) >> 1; if (arr[m] < v) lo = m + 1; else hi = m; }
  return lo;
}

export class CurveChart {
  // request: {runs|q, name, context}; opts: {x, yScale, smooth, group, band, color, points};
  // colorFor(seriesMeta, index) -> css colour; onStats(stats) for the test hook.
  constructor(box, { title, request, opts, colorFor, onStats = () => {}, height = 260 }) {
    this.box = box;
    this.request = request;
    this.opts = opts;
    this.colorFor = colorFor;
    this.onStats = onStats;
    this.height = height;
    this.title = title;
    this.meta = null;
    this.series = [];
    this.u = null;
    this.range = null;
    this.abort = null;
  }

  body(extra = {}) {
    const width = Math.max(200, this.box.clientWidth || 600);
    const o = this.opts;
    return { ...this.request, x: o.x || "step", smooth: o.smooth || 0, group: o.group || null, band: o.band || "minmax",
             color: o.color || null, points: o.points || 2 * width, range: this.range, ...extra };
  }

  async load() {
    if (this.abort) this.abort.abort();
    this.abort = new AbortController();
    const t0 = performance.now();
    let parts = [];
    let last = 0;
    let decode = 0;
    // Draw the first record batch as soon as it arrives (the server sends one per 128
    // curves), then once more with everything: redrawing on every batch would paint the
    // growing data again and again and finish later.
    const flush = (final) => {
      const td = performance.now();
      if (parts.length) {
        for (const batch of parts) {
          const split = splitSeries(batch, this.series.length);
          split.forEach((s, i) => { if (s) this.series[i] = this.merge(this.series[i], s); });
        }
        parts = [];
      }
      decode += performance.now() - td;
      if (final || !this.u) {
        last = td;
        this.points = this.series.reduce((a, s) => a + s.x.length, 0);
        this.draw(final);
      }
    };
    this.bytes = await streamArrow("/api/curves", this.body(), this.abort.signal, (meta) => {
      this.meta = meta;
      const n = meta.grouped ? meta.groups.length : meta.series.length;
      this.series = Array.from({ length: n }, () => ({ x: new Float64Array(0), y: new Float64Array(0) }));
    }, (batch) => {
      parts.push(batch);
      if (!this.u) flush(false);
    });
    this.fetchMs = performance.now() - t0;
    flush(true);
    this.onStats({ decodeMs: decode, complete: true, loadMs: performance.now() - t0 });
  }

  // Append the points of one series that arrived in another batch (a series never spans
  // batches from the server, but a live reply may add to it).
  merge(old, add) {
    if (!old.x.length) return add;
    const out = {};
    for (const k of Object.keys(add)) out[k] = concatTyped(old[k], add[k]);
    return out;
  }

  colors() {
    if (this.meta.grouped) return this.meta.groups.map((g, i) => this.colorFor({ group_value: g.value, grouped: true }, i));
    return this.meta.series.map((s, i) => this.colorFor(s, i));
  }

  yValues(y) {
    if (this.opts.yScale !== "log") return y;
    const out = new Array(y.length);
    for (let i = 0; i < y.length; i++) out[i] = y[i] > 0 ? y[i] : null;  // log: values <= 0 are gaps
    return out;
  }

  extent() {
    let xmin = Infinity, xmax = -Infinity, ymin = Infinity, ymax = -Infinity;
    const log = this.opts.yScale === "log";
    for (const s of this.series) {
      const ys = [s.y, s.lo, s.hi].filter(Boolean);
      if (s.x.length) { xmin = Math.min(xmin, s.x[0]); xmax = Math.max(xmax, s.x[s.x.length - 1]); }
      for (const arr of ys) for (let i = 0; i < arr.length; i++) {
        const v = arr[i];
        if (!Number.isFinite(v) || (log && v <= 0)) continue;
        if (v < ymin) ymin = v;
        if (v > ymax) ymax = v;
      }
    }
    if (!Number.isFinite(xmin)) { xmin = 0; xmax = 1; }
    if (xmin === xmax) { xmin -= 0.5; xmax += 0.5; }
    if (!Number.isFinite(ymin)) { ymin = log ? 0.1 : 0; ymax = log ? 10 : 1; }
    if (ymin === ymax) { ymin -= Math.abs(ymin) * 0.1 || 0.5; ymax += Math.abs(ymax) * 0.1 || 0.5; }
    if (!log) { const pad = (ymax - ymin) * 0.04; ymin -= pad; ymax += pad; }
    return { xmin, xmax, ymin, ymax };
  }

  draw(final = true) {
    const colors = this.colors();
    const ext = this.extent();
    const xr = this.range ? [this.range[0], this.range[1]] : [ext.xmin, ext.xmax];
    const data = [null, ...this.series.map((s) => [s.x, this.yValues(s.y)])];
    const series = [{}, ...colors.map((c, i) => ({
      label: String(i), stroke: c, width: this.meta.grouped ? 2 : 1,
      paths: window.uPlot.paths.linear(), points: { show: false },
      facets: [{ scale: "x", auto: false }, { scale: "y", auto: false }],
    }))];
    const opts = {
      mode: 2, width: Math.max(200, this.box.clientWidth - 8), height: this.height,
      legend: { show: false },
      cursor: { points: { show: false }, drag: { x: true, y: false, setScale: false } },
      scales: {
        x: { time: this.opts.x === "wall", auto: false, range: () => xr },
        y: { auto: false, distr: Y_DISTR[this.opts.yScale || "linear"], log: 10, asinh: 1, range: () => [ext.ymin, ext.ymax] },
      },
      axes: [{}, { size: 60, values: (u, vals) => vals.map((v) => formatNumber(v)) }],
      series,
      hooks: {
        drawAxes: [(u) => this.drawBands(u, colors)],
        setCursor: [(u) => this.hover(u)],
        setSelect: [(u) => this.zoom(u)],
      },
    };
    if (this.u) this.u.destroy();
    this.box.querySelector(".placeholder")?.remove();
    this.u = new window.uPlot(opts, data, this.box);
    this.u.over.addEventListener("dblclick", () => { if (this.range) { this.range = null; this.load(); } });
    this.u.over.addEventListener("mouseleave", () => { this.marker.style.display = "none"; this.tip.style.display = "none"; });
    this.marker = document.createElement("div");
    this.marker.className = "marker";
    this.tip = document.createElement("div");
    this.tip.className = "tip";
    this.u.over.append(this.marker, this.tip);
    if (!final) { requestAnimationFrame(() => this.onStats({ paintedAt: performance.now() })); return; }
    this.onStats({ series: this.series.length, points: this.points, fetchMs: this.fetchMs, bytes: this.bytes,
                   bucket: this.meta.bucket, yScale: this.opts.yScale || "linear", smooth: this.opts.smooth || 0,
                   grouped: this.meta.grouped, x: this.opts.x || "step", zoomed: !!this.range,
                   canvases: this.box.querySelectorAll("canvas").length });
    // uPlot paints in the next animation frame: report when that frame has run
    requestAnimationFrame(() => this.onStats({ paintedAt: performance.now(), completePaintedAt: performance.now() }));
  }

  drawBands(u, colors) {
    if (!this.meta.grouped) return;
    const ctx = u.ctx;
    ctx.save();
    this.series.forEach((s, i) => {
      if (!s.x.length) return;
      ctx.beginPath();
      for (let k = 0; k < s.x.length; k++) ctx.lineTo(u.valToPos(s.x[k], "x", true), u.valToPos(s.hi[k], "y", true));
      for (let k = s.x.length - 1; k >= 0; k--) ctx.lineTo(u.valToPos(s.x[k], "x", true), u.valToPos(s.lo[k], "y", true));
      ctx.closePath();
      ctx.fillStyle = withAlpha(colors[i], 0.18);
      ctx.fill();
    });
    ctx.restore();
  }

  // The nearest point of any series to the cursor: one marker, one tooltip.
  hover(u) {
    const { left, top } = u.cursor;
    if (left == null || left < 0) return;
    const xv = u.posToVal(left, "x");
    let best = null;
    this.series.forEach((s, i) => {
      if (!s.x.length) return;
      const j = lowerBound(s.x, xv);
      for (const k of [j - 1, j]) {
        if (k < 0 || k >= s.x.length || !Number.isFinite(s.y[k])) continue;
        const px = u.valToPos(s.x[k], "x"), py = u.valToPos(s.y[k], "y");
        const d = (px - left) ** 2 + (py - top) ** 2;
        if (!best || d < best.d) best = { d, i, k, px, py };
      }
    });
    if (!best) return;
    const s = this.series[best.i];
    const label = this.meta.grouped ? `${this.request.groupKey || "group"} = ${JSON.stringify(this.meta.groups[best.i].value)}`
      : `${this.meta.series[best.i].run_name || this.meta.series[best.i].handle}`;
    Object.assign(this.marker.style, { display: "block", left: `${best.px}px`, top: `${best.py}px`,
                                        borderColor: this.colors()[best.i] });
    this.tip.textContent = `${label}  ${formatNumber(s.y[best.k])} @ ${formatNumber(s.x[best.k])}`;
    Object.assign(this.tip.style, { display: "block", left: `${best.px + 10}px`, top: `${Math.max(0, best.py - 28)}px` });
    this.hovered = { series: best.i, label };
  }

  async zoom(u) {
    if (u.select.width < 5) return;
    const a = u.posToVal(u.select.left, "x"), b = u.posToVal(u.select.left + u.select.width, "x");
    u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
    this.range = [a, b];
    await this.load();  // the visible range again, at full resolution when it fits
  }

  setOpts(opts) {
    this.opts = { ...this.opts, ...opts };
  }

  running() {
    return this.meta && !this.meta.grouped && this.meta.series.some((s) => s.status === "running");
  }

  // Append the new points of running series (no full refetch).
  async live() {
    if (!this.running() || this.range) return 0;
    const idx = this.meta.series.map((s, i) => (s.status === "running" ? i : -1)).filter((i) => i >= 0);
    const since = Object.fromEntries(idx.map((i) => [this.meta.series[i].run, this.meta.series[i].cursor]));
    const { table } = await getArrow("/api/curves", this.body({ runs: Object.keys(since), q: null, since,
                                                                bucket: this.meta.bucket }));
    const meta = tableMeta(table);
    if (meta.replace) { await this.load(); return -1; }
    const parts = splitSeries(table, meta.series.length);
    let added = 0;
    meta.series.forEach((m, j) => {
      const i = this.meta.series.findIndex((s) => s.run === m.run);
      if (i < 0) return;
      const old = this.series[i], cut = since[m.run];
      const steps = old.step || old.x;
      const keep = lowerBound(steps, cut);
      const p = parts[j] || { x: new Float64Array(0), y: new Float64Array(0) };
      const merged = { x: concatTyped(old.x.subarray(0, keep), p.x), y: concatTyped(old.y.subarray(0, keep), p.y) };
      if (old.step) merged.step = concatTyped(old.step.subarray(0, keep), p.step);
      added += p.x.length;
      this.series[i] = merged;
      this.meta.series[i] = { ...this.meta.series[i], cursor: m.cursor, status: m.status, count: m.count };
    });
    this.points = this.series.reduce((a, s) => a + s.x.length, 0);
    this.draw();  // a new uPlot over the merged arrays: cheap, and the ranges follow the data
    this.onStats({ liveAppended: added });
    return added;
  }

  destroy() {
    if (this.abort) this.abort.abort();
    if (this.u) this.u.destroy();
    this.u = null;
    this.series = [];
  }
}
