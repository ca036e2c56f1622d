// The explorer: one chart per (metric, context) for the selected runs, only the charts in
// view mounted, shared controls (x, y scale, smoothing, group, colour) and one legend list.

import { getJSON, sendJSON } from "./api.js";
import { colorAt, valueKey } from "./colors.js";
import { CurveChart } from "./chart.js";
import { el } from "./runs.js";
import { VirtualList } from "./vlist.js";

export class ExplorerPage {
  constructor(root, params, state, hook) {
    this.root = root;
    this.hook = hook;
    const runs = params.get("runs");
    this.spec = runs ? { runs: runs.split(",") } : params.get("q") !== null ? { q: params.get("q") } : state.selectionSpec();
    this.opts = { x: params.get("x") || "step", yScale: params.get("y") || "linear", smooth: Number(params.get("smooth") || 0),
                  group: params.get("group") || "", band: "minmax", color: params.get("color") || "" };
    this.charts = new Map();
    this.runColors = new Map();   // run id -> colour index, stable across charts
    this.valueColors = new Map(); // colour-key value -> colour
    this.legendItems = [];
    hook.explorer = { charts: {}, mounted: 0, metrics: 0, opts: this.opts, firstPaintMs: null, completePaintMs: null, legendRows: 0 };
    this.build();
    this.loadMetrics();
    this.timer = setInterval(() => this.live(), 2000);
  }

  destroy() {
    clearInterval(this.timer);
    this.observer?.disconnect();
    for (const c of this.charts.values()) c.chart?.destroy();
    this.legend?.destroy();
  }

  build() {
    const xSel = el("select", { "aria-label": "x axis", id: "x-mode" },
      ...["step", "epoch", "relative", "wall"].map((m) => el("option", { value: m }, m === "relative" ? "relative time" : m === "wall" ? "wall time" : m)));
    xSel.value = this.opts.x;
    xSel.addEventListener("change", () => this.update({ x: xSel.value }));
    const ySel = el("select", { "aria-label": "y scale", id: "y-scale" }, ...["linear", "log", "asinh"].map((m) => el("option", { value: m }, m)));
    ySel.value = this.opts.yScale;
    ySel.addEventListener("change", () => this.update({ yScale: ySel.value }));
    const smooth = el("input", { type: "range", min: "0", max: "0.99", step: "0.01", id: "smoothing", "aria-label": "smoothing" });
    smooth.value = String(this.opts.smooth);
    const smoothLabel = el("span", { class: "muted" }, String(this.opts.smooth));
    smooth.addEventListener("input", () => { smoothLabel.textContent = smooth.value; });
    smooth.addEventListener("change", () => this.update({ smooth: Number(smooth.value) }));
    const group = el("input", { type: "text", placeholder: "group by key", size: "16", id: "group-by", "aria-label": "group by" });
    group.value = this.opts.group;
    group.addEventListener("change", () => this.update({ group: group.value.trim() }));
    const band = el("select", { "aria-label": "band" }, el("option", { value: "minmax" }, "min/max band"), el("option", { value: "std" }, "±1 std band"));
    band.addEventListener("change", () => this.update({ band: band.value }));
    const color = el("input", { type: "text", placeholder: "colour by key", size: "16", id: "color-by", "aria-label": "colour by" });
    color.value = this.opts.color;
    color.addEventListener("change", () => this.update({ color: color.value.trim() }));
    this.filter = el("input", { type: "text", placeholder: "filter metrics", size: "14", "aria-label": "filter metrics" });
    this.filter.addEventListener("input", () => this.layout());
    this.info = el("span", { class: "muted" });
    const what = this.spec.runs ? `${this.spec.runs.length} selected runs` : `runs matching ${this.spec.q || "(everything)"}`;
    const bar = el("div", { class: "toolbar" }, el("b", {}, what), "x", xSel, "y", ySel, "smoothing", smooth, smoothLabel,
      group, band, color, this.filter, this.info);
    this.chartsEl = el("div", { class: "charts" });
    this.legendBody = el("div", { class: "vbody", id: "legend" });
    const legend = el("div", { class: "legend vtable" }, el("div", { class: "vhead" }, el("div", { class: "hcell" }, "legend")), this.legendBody);
    this.root.append(bar, el("div", { class: "explorer" }, this.chartsEl, legend));
    this.legend = new VirtualList(this.legendBody, { rowHeight: 22, total: 0, renderRow: (i) => this.legendRow(i) });
    this.observer = new IntersectionObserver((entries) => this.onView(entries), { rootMargin: "150px 0px" });
  }

  async loadMetrics() {
    try {
      this.metrics = await sendJSON("/api/metrics", "POST", this.spec);
    } catch (err) {
      this.chartsEl.replaceChildren(el("div", { class: "error-box" }, err.message));
      return;
    }
    this.hook.explorer.metrics = this.metrics.length;
    this.layout();
  }

  layout() {
    for (const c of this.charts.values()) c.chart?.destroy();
    this.charts.clear();
    this.observer.disconnect();
    this.hook.explorer.charts = {};
    const f = (this.filter.value || "").toLowerCase();
    const shown = this.metrics.filter((m) => m.key.toLowerCase().includes(f));
    this.info.textContent = `${shown.length} chart${shown.length === 1 ? "" : "s"}`;
    if (!shown.length) {
      this.chartsEl.replaceChildren(el("div", { class: "muted" }, "No metrics for this selection. Select runs on the Runs page."));
      return;
    }
    const boxes = shown.map((m) => {
      const box = el("div", { class: "chart-box", "data-key": m.key }, el("h3", {}, m.key, el("span", { class: "muted" }, `  ${m.runs} runs`)),
        el("div", { class: "placeholder" }, "scroll here to draw"));
      this.charts.set(box, { metric: m, chart: null });
      this.hook.explorer.charts[m.key] = { mounted: false, series: 0 };
      this.observer.observe(box);
      return box;
    });
    this.chartsEl.replaceChildren(...boxes);
  }

  onView(entries) {
    for (const e of entries) {
      const entry = this.charts.get(e.target);
      if (!entry) continue;
      if (e.isIntersecting && !entry.chart) this.mount(e.target, entry);
      else if (!e.isIntersecting && entry.chart) this.unmount(e.target, entry);
    }
    this.hook.explorer.mounted = [...this.charts.values()].filter((c) => c.chart).length;
  }

  mount(box, entry) {
    const m = entry.metric;
    const stats = this.hook.explorer.charts[m.key];
    entry.chart = new CurveChart(box, {
      title: m.key,
      request: { ...this.spec, name: m.name, context: m.context, groupKey: this.opts.group },
      opts: { ...this.opts },
      colorFor: (s, i) => this.colorFor(s, i),
      onStats: (st) => {
        Object.assign(stats, st, { mounted: true });
        // time from navigation start to the first chart painted (the benchmark reads it)
        if (this.hook.explorer.firstPaintMs === null && st.paintedAt !== undefined) this.hook.explorer.firstPaintMs = st.paintedAt;
        // ... and to the first chart painted with all of its curves
        if (!this.hook.explorer.completePaintMs && st.completePaintedAt !== undefined) this.hook.explorer.completePaintMs = st.completePaintedAt;
        this.updateLegend(entry.chart);
      },
    });
    entry.chart.load().catch((err) => {
      if (err.name === "AbortError") return;
      box.append(el("div", { class: "error-box" }, err.message));
    });
  }

  unmount(box, entry) {
    entry.chart.destroy();
    entry.chart = null;
    this.hook.explorer.charts[entry.metric.key] = { mounted: false, series: 0 };
    box.querySelectorAll(".uplot").forEach((n) => n.remove());
    if (!box.querySelector(".placeholder")) box.append(el("div", { class: "placeholder" }, "scroll here to draw"));
  }

  update(change) {
    Object.assign(this.opts, change);
    this.hook.explorer.opts = this.opts;
    const url = new URL(location.href);
    for (const [k, p] of [["x", "x"], ["yScale", "y"], ["smooth", "smooth"], ["group", "group"], ["color", "color"]]) {
      if (this.opts[k]) url.searchParams.set(p, this.opts[k]); else url.searchParams.delete(p);
    }
    history.replaceState(null, "", url);
    if ("color" in change) this.valueColors.clear();
    for (const [box, entry] of this.charts) {
      if (!entry.chart) continue;
      entry.chart.setOpts(this.opts);
      entry.chart.request.groupKey = this.opts.group;
      entry.chart.range = null;
      entry.chart.load().catch(() => {});
    }
  }

  colorFor(s, i) {
    if (s.grouped) return this.colorOfValue(s.group_value);
    if (this.opts.color) return this.colorOfValue(s.color_value);
    if (!this.runColors.has(s.run)) this.runColors.set(s.run, this.runColors.size);
    return colorAt(this.runColors.get(s.run));
  }

  colorOfValue(v) {
    const k = valueKey(v);
    if (!this.valueColors.has(k)) this.valueColors.set(k, colorAt(this.valueColors.size));
    return this.valueColors.get(k);
  }

  updateLegend(chart) {
    if (!chart.meta) return;
    const items = chart.meta.grouped
      ? chart.meta.groups.map((g) => ({ color: this.colorOfValue(g.value), text: `${this.opts.group} = ${JSON.stringify(g.value)}`, note: `${g.runs} runs` }))
      : chart.meta.series.map((s, i) => ({ color: this.colorFor(s, i), text: s.run_name || s.handle, note: this.opts.color ? `${this.opts.color} = ${JSON.stringify(s.color_value)}` : s.handle }));
    if (items.length >= this.legendItems.length || chart.meta.grouped) {
      this.legendItems = items;
      this.legend.setTotal(items.length);
      this.hook.explorer.legendRows = this.legend.rowCount();
      this.hook.explorer.legendItems = items.length;
    }
  }

  legendRow(i) {
    const it = this.legendItems[i];
    const sw = el("span", { class: "swatch" });
    sw.style.background = it.color;
    const row = el("div", { class: "vrow", title: it.note }, el("div", { class: "cell" }, sw, it.text, el("span", { class: "muted" }, `  ${it.note}`)));
    return row;
  }

  async live() {
    for (const entry of this.charts.values()) {
      if (!entry.chart || !entry.chart.meta) continue;
      try {
        const n = await entry.chart.live();
        if (n) this.hook.explorer.liveAppends = (this.hook.explorer.liveAppends || 0) + 1;
      } catch (e) { /* the next tick retries */ }
    }
  }
}
