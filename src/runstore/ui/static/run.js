// Run detail: attributes (name, description, tags, archive editable), a collapsible and
// searchable params tree, every sequence as a small chart (mounted when in view),
// artifacts, parent/children links, system metrics apart.

import { getJSON, sendJSON } from "./api.js";
import { CurveChart } from "./chart.js";
import { colorAt } from "./colors.js";
import { formatDuration, formatNumber, formatTime } from "./format.js";
import { objectViews } from "./objects.js";
import { el } from "./runs.js";

function runLink(r) {
  return r ? el("a", { href: `/run/${r.id}`, "data-link": "" }, `${r.name || "(unnamed)"} (${r.handle})`) : "—";
}

export class RunPage {
  constructor(root, runId, state, hook) {
    this.root = root;
    this.hook = hook;
    this.charts = [];
    hook.run = { id: runId, loaded: false, charts: 0, mounted: 0 };
    this.load(runId);
  }

  destroy() {
    this.observer?.disconnect();
    this.charts.forEach((c) => c.chart?.destroy());
    (this.views || []).forEach((v) => v.destroy());
    clearInterval(this.liveTimer);
  }

  async load(runId) {
    let d;
    try {
      d = await getJSON(`/api/runs/${encodeURIComponent(runId)}`);
    } catch (err) {
      this.root.append(el("h2", {}, "Run not found"), el("div", { class: "error-box" }, err.message));
      this.hook.run.error = err.message;
      return;
    }
    this.d = d;
    const name = el("input", { type: "text", value: d.name || "", "aria-label": "name", size: "30" });
    name.addEventListener("change", () => this.save({ name: name.value }));
    const desc = el("input", { type: "text", value: d.description || "", "aria-label": "description", size: "50" });
    desc.addEventListener("change", () => this.save({ description: desc.value }));
    const tags = el("input", { type: "text", value: d.tags.join(", "), "aria-label": "tags", size: "30" });
    tags.addEventListener("change", () => this.save({ tags: tags.value.split(",").map((t) => t.trim()).filter(Boolean) }));
    const archived = el("input", { type: "checkbox", "aria-label": "archived" });
    archived.checked = d.archived;
    archived.addEventListener("change", () => this.save({ archived: archived.checked }));
    const rows = [
      ["id", el("span", { class: "mono" }, `${d.id}  (${d.handle})`)], ["name", name], ["description", desc],
      ["experiment", d.experiment], ["status", el("span", { class: `status status-${d.status}` }, d.status)],
      ["tags", tags], ["archived", archived], ["created", formatTime(d.created_at)],
      ["ended", d.ended_at ? formatTime(d.ended_at) : "—"], ["duration", formatDuration(d.duration)],
      ["host / pid", `${d.hostname} / ${d.pid}`], ["parent", runLink(d.parent)],
      ["children", d.children.length ? el("span", {}, ...d.children.flatMap((c, i) => [i ? ", " : "", runLink(c)])) : "—"],
    ];
    const attrs = el("table", { class: "kv" }, ...rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))));
    this.saved = el("span", { class: "muted" });
    const search = el("input", { type: "text", placeholder: "search params", "aria-label": "search params" });
    this.paramsEl = el("div", { class: "params" });
    search.addEventListener("input", () => this.renderParams(search.value.trim().toLowerCase()));
    const arts = d.artifacts.length
      ? el("ul", {}, ...d.artifacts.map((a) => el("li", {}, el("a", { href: `/api/runs/${d.id}/artifacts/${encodeURIComponent(a.name)}`, download: a.name }, a.name),
        el("span", { class: "muted" }, `  ${a.kind || ""} ${formatNumber(a.size)} bytes`))))
      : el("div", { class: "muted" }, "no artifacts");
    const curves = d.sequences.filter((s) => (s.type || "float") === "float");
    const metrics = curves.filter((s) => !s.system);
    const system = curves.filter((s) => s.system);
    const objects = d.sequences.filter((s) => (s.type || "float") !== "float");
    const summary = el("table", { class: "kv" }, el("tr", {}, ...["sequence", "type", "points", "last", "min", "max", "last step"].map((h) => el("th", {}, h))),
      ...d.sequences.map((s) => el("tr", {}, el("td", {}, s.key), el("td", {}, s.type || "float"), el("td", {}, String(s.count)), el("td", {}, formatNumber(s.last)),
        el("td", {}, formatNumber(s.min)), el("td", {}, formatNumber(s.max)), el("td", {}, formatNumber(s.last_step)))));
    this.views = objectViews(d.id, objects, this.hook.run);
    // A running run's object views follow its new points (sliders at the end stay there).
    if (d.status === "running" && this.views.length) {
      // one cheap list call (counts from the sequence summaries) per tick; a view refetches
      // only when one of its sequences has new points
      this.liveTimer = setInterval(async () => {
        const counts = new Map((await getJSON(`/api/runs/${encodeURIComponent(d.id)}/objects`).catch(() => [])).map((s) => [s.key, s.count]));
        this.views.forEach((v) => { if (v.state.mounted && !v.state.error) v.refresh(counts).catch(() => {}); });
        this.hook.run.liveTicks = (this.hook.run.liveTicks || 0) + 1;
      }, 2000);
    }
    this.root.append(
      el("h2", {}, `Run ${d.name || d.handle}`), attrs, this.saved,
      el("h2", {}, "Params"), search, this.paramsEl,
      el("h2", {}, "Sequences"), summary, this.grid(metrics),
      ...(this.views.length ? [el("h2", {}, "Objects"), this.objectGrid(this.views)] : []),
      ...(system.length ? [el("h2", {}, "System metrics"), this.grid(system)] : []),
      el("h2", {}, "Artifacts"), arts,
    );
    this.renderParams("");
    this.hook.run = { ...this.hook.run, loaded: true, name: d.name, sequences: d.sequences.length, charts: this.charts.length,
                      objectViews: this.views.length };
  }

  async save(change) {
    try {
      await sendJSON(`/api/runs/${this.d.id}`, "PATCH", change);
      this.saved.textContent = "saved";
      this.hook.run.saved = (this.hook.run.saved || 0) + 1;
    } catch (err) {
      this.saved.textContent = err.message;
    }
  }

  renderParams(filter) {
    const make = (obj, path) => Object.entries(obj).map(([k, v]) => {
      const full = path ? `${path}.${k}` : k;
      if (v && typeof v === "object" && !Array.isArray(v)) {
        const kids = make(v, full);
        if (!kids.length) return null;
        const det = el("details", {}, el("summary", {}, k), ...kids);
        det.open = true;
        return det;
      }
      const text = `${k} = ${JSON.stringify(v)}`;
      if (filter && !full.toLowerCase().includes(filter) && !JSON.stringify(v).toLowerCase().includes(filter)) return null;
      return el("div", { class: `leaf${filter ? " hit" : ""}`, title: full }, text);
    }).filter(Boolean);
    const items = make(this.d.params, "");
    this.paramsEl.replaceChildren(...(items.length ? items : [el("div", { class: "muted" }, filter ? "no param matches" : "no params")]));
    this.hook.run.paramLeaves = this.paramsEl.querySelectorAll(".leaf").length;
  }

  grid(seqs) {
    const grid = el("div", { class: "grid" });
    if (!this.observer) this.observer = new IntersectionObserver((es) => this.onView(es), { rootMargin: "100px 0px" });
    for (const s of seqs) {
      const box = el("div", { class: "chart-box", "data-key": s.key }, el("h3", {}, s.key), el("div", { class: "placeholder" }, "…"));
      const entry = { box, seq: s, chart: null };
      this.charts.push(entry);
      box._entry = entry;
      this.observer.observe(box);
      grid.append(box);
    }
    return grid;
  }

  // Object views: each box is observed like a chart and fetches only once it is in view.
  objectGrid(views) {
    const grid = el("div", { class: "grid objects" });
    if (!this.observer) this.observer = new IntersectionObserver((es) => this.onView(es), { rootMargin: "100px 0px" });
    for (const v of views) {
      v.box._entry = { view: v };
      this.observer.observe(v.box);
      grid.append(v.box);
    }
    return grid;
  }

  onView(entries) {
    for (const e of entries) {
      const entry = e.target._entry;
      if (e.isIntersecting && entry.view) {
        entry.view.mount();
        this.observer.unobserve(e.target);
        continue;
      }
      if (!e.isIntersecting || entry.chart) continue;
      entry.chart = new CurveChart(entry.box, {
        title: entry.seq.key, height: 170,
        request: { runs: [this.d.id], name: entry.seq.name, context: entry.seq.context },
        opts: { x: "step", yScale: "linear" }, colorFor: () => colorAt(0),
        onStats: () => { this.hook.run.mounted = this.charts.filter((c) => c.chart && c.chart.u).length; },
      });
      entry.chart.load().catch(() => {});
    }
  }
}
