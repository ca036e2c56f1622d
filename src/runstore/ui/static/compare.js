// Compare 2-10 runs: params diff (only differing keys by default), metric summaries side by
// side, and overlaid curves for every metric they share.

import { getJSON } from "./api.js";
import { CurveChart } from "./chart.js";
import { colorAt } from "./colors.js";
import { differingKeys, flatten, formatNumber } from "./format.js";
import { el } from "./runs.js";

export class ComparePage {
  constructor(root, params, state, hook) {
    this.root = root;
    this.hook = hook;
    this.charts = [];
    const ids = (params.get("runs") || "").split(",").filter(Boolean);
    const sel = ids.length ? ids : [...state.selection.ids];
    hook.compare = { runs: sel.length, loaded: false };
    if (sel.length < 2 || sel.length > 10) {
      root.append(el("h2", {}, "Compare"), el("div", { class: "muted" }, "Select 2 to 10 runs on the Runs page, then press Compare."));
      return;
    }
    this.load(sel);
  }

  destroy() {
    this.charts.forEach((c) => c.destroy());
  }

  async load(ids) {
    let runs;
    try {
      runs = await Promise.all(ids.map((id) => getJSON(`/api/runs/${encodeURIComponent(id)}`)));
    } catch (err) {
      this.root.append(el("div", { class: "error-box" }, err.message));
      return;
    }
    const flats = runs.map((r) => flatten(r.params));
    const differ = differingKeys(flats);
    const all = [...new Set(flats.flatMap((f) => Object.keys(f)))].sort();
    const showAll = el("input", { type: "checkbox", id: "show-all-params" });
    const table = el("table", { class: "diff", id: "params-diff" });
    const head = el("tr", {}, el("th", {}, "param"), ...runs.map((r, i) => {
      const sw = el("span", { class: "swatch" });
      sw.style.background = colorAt(i);
      return el("th", {}, sw, el("a", { href: `/run/${r.id}`, "data-link": "" }, r.name || r.handle));
    }));
    const render = () => {
      const keys = showAll.checked ? all : differ;
      table.replaceChildren(head, ...keys.map((k) => el("tr", {}, el("td", { class: "mono" }, k),
        ...flats.map((f) => el("td", { class: differ.includes(k) ? "differs" : "" }, k in f ? JSON.stringify(f[k]) : "—")))));
      this.hook.compare.paramRows = keys.length;
    };
    showAll.addEventListener("change", render);
    render();
    const seqKeys = [...new Set(runs.flatMap((r) => r.sequences.map((s) => s.key)))].sort();
    const summaries = el("table", { class: "diff" }, el("tr", {}, el("th", {}, "metric"), ...runs.map((r) => el("th", {}, r.name || r.handle))),
      ...seqKeys.flatMap((k) => ["last", "min", "max"].map((f) => el("tr", {}, el("td", { class: "mono" }, `${k}.${f}`),
        ...runs.map((r) => { const s = r.sequences.find((x) => x.key === k); return el("td", {}, s ? formatNumber(s[f]) : "—"); })))));
    const grid = el("div", { class: "grid" });
    this.root.append(el("h2", {}, `Compare ${runs.length} runs`), el("label", {}, showAll, " show params that are equal too"),
      table, el("h2", {}, "Metric summaries"), summaries, el("h2", {}, "Curves"), grid);
    const order = new Map(ids.map((id, i) => [id, i]));
    for (const k of seqKeys) {
      const s = runs.flatMap((r) => r.sequences).find((x) => x.key === k);
      const box = el("div", { class: "chart-box", "data-key": k }, el("h3", {}, k), el("div", { class: "placeholder" }, "…"));
      grid.append(box);
      const chart = new CurveChart(box, {
        title: k, height: 170, request: { runs: ids, name: s.name, context: s.context }, opts: { x: "step", yScale: "linear" },
        colorFor: (m) => colorAt(order.get(m.run) ?? 0),
        onStats: (st) => { if (st.series !== undefined) this.hook.compare.charts = (this.hook.compare.charts || 0) + 1; },
      });
      this.charts.push(chart);
      chart.load().catch(() => {});
    }
    this.hook.compare = { ...this.hook.compare, loaded: true, differing: differ.length, metrics: seqKeys.length };
  }
}
