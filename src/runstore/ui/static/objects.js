// Object sequences (images, text, distributions, figures, audio, arrays) on the run page.
// Each view is a box that fetches nothing until mount() is called (when it scrolls into
// view): images, figures and audio of one name share a step slider with one cell per
// context; text is a paged table; a distribution is a heatmap of counts over steps drawn
// on one canvas; an array is a small heatmap table with its own slider.
// State for tests goes to hook.run.objects[key].

import { getJSON, query } from "./api.js";
import { formatNumber } from "./format.js";
import { el } from "./runs.js";

const MEDIA = new Set(["image", "figure", "audio"]);
const TEXT_PAGE = 20;

function objURL(runId, route, params) {
  return `/api/runs/${encodeURIComponent(runId)}/objects/${route}?${query(params)}`;
}

function contextLabel(ctx) {
  const parts = [];
  const walk = (prefix, v) => {
    if (v && typeof v === "object" && !Array.isArray(v)) Object.keys(v).sort().forEach((k) => walk(prefix ? `${prefix}.${k}` : k, v[k]));
    else parts.push(`${prefix}=${v}`);
  };
  walk("", ctx || {});
  return parts.join(", ") || "(no context)";
}

// Views for a run's object sequences, in the order the run created them.
export function objectViews(runId, seqs, hook) {
  hook.objects = hook.objects || {};
  const views = [];
  const media = new Map();
  for (const s of seqs) {
    if (MEDIA.has(s.type)) {
      const key = `${s.type}:${s.name}`;
      if (!media.has(key)) {
        const v = new MediaView(runId, s.name, s.type, hook);
        media.set(key, v);
        views.push(v);
      }
      media.get(key).seqs.push(s);
    } else if (s.type === "text") views.push(new TextView(runId, s, hook));
    else if (s.type === "distribution") views.push(new DistributionView(runId, s, hook));
    else if (s.type === "array") views.push(new ArrayView(runId, s, hook));
  }
  return views;
}

class View {
  constructor(key, title, type, hook) {
    this.key = key;
    this.state = hook.objects[key] = { type, mounted: false, error: null };
    this.body = el("div", { class: "obj-body" }, el("div", { class: "placeholder" }, "…"));
    this.box = el("div", { class: `chart-box obj-box obj-${type}`, "data-key": key },
      el("h3", {}, title, el("span", { class: "muted" }, `  ${type}`)), this.body);
  }

  mount() {
    if (this.state.mounted) return;
    this.state.mounted = true;
    this.load().catch((err) => {
      this.state.error = err.message;
      this.body.replaceChildren(el("div", { class: "error-box" }, err.message));
    });
  }

  // Called every 2 s while the run is running with the point count of every object
  // sequence (key -> count): fetch what is new, if anything.
  async refresh(counts) {}

  changed(seqs, counts) {
    const now = seqs.map((s) => counts.get(s.key) ?? s.count);
    const was = this.counts || seqs.map((s) => s.count);
    this.counts = now;
    return now.some((c, i) => c !== was[i]);
  }

  destroy() {}
}

// A slider over steps: fires onStep(step) at most once per animation frame while dragged.
function stepSlider(steps, onStep) {
  const input = el("input", { type: "range", min: "0", max: String(steps.length - 1), value: String(steps.length - 1), "aria-label": "step" });
  const label = el("span", { class: "mono" });
  let pending = false;
  const fire = () => {
    pending = false;
    const step = steps[Number(input.value)];
    label.textContent = `step ${step}`;
    onStep(step);
  };
  input.addEventListener("input", () => { if (!pending) { pending = true; requestAnimationFrame(fire); } });
  const row = el("div", { class: "obj-slider" }, input, label);
  input.disabled = steps.length < 2;
  // New steps (a running run): a slider at the end moves on to the new last step.
  const grow = (more) => {
    if (more.length === steps.length && more[more.length - 1] === steps[steps.length - 1]) return false;  // thinned lists keep their length
    const atEnd = Number(input.value) === steps.length - 1;
    steps.splice(0, steps.length, ...more);
    input.max = String(steps.length - 1);
    input.disabled = steps.length < 2;
    if (atEnd) { input.value = input.max; fire(); }
    return true;
  };
  return { row, input, fire, grow };
}

// Images, figures or audio of one name: one cell per context, one slider for all.
class MediaView extends View {
  constructor(runId, name, type, hook) {
    super(name, name, type, hook);
    this.runId = runId;
    this.name = name;
    this.type = type;
    this.seqs = [];
  }

  async allSteps() {
    const infos = await Promise.all(this.seqs.map((s) => getJSON(objURL(this.runId, "steps", { name: s.name, context: JSON.stringify(s.context), max: 1000 }))));
    return [infos, [...new Set(infos.flatMap((i) => i.steps))].sort((a, b) => a - b)];
  }

  async refresh(counts) {
    if (!this.slider || !this.changed(this.seqs, counts)) return;
    const [, all] = await this.allSteps();
    if (this.slider.grow(all)) this.state.steps = all.length;
  }

  async load() {
    const [infos, all] = await this.allSteps();
    this.cells = this.seqs.map((s, i) => this.cell(s, infos[i]));
    this.state.steps = all.length;
    this.state.cells = this.cells.length;
    this.state.loads = 0;
    this.slider = stepSlider(all, (step) => this.show(step));
    this.body.replaceChildren(this.slider.row, el("div", { class: "obj-cells" }, ...this.cells.map((c) => c.root)));
    this.slider.fire();
  }

  cell(s, info) {
    const caption = el("div", { class: "obj-caption muted" });
    let media;
    if (this.type === "audio") media = el("audio", { controls: "", preload: "none" });
    else if (this.type === "figure" && info.library === "plotly") {
      media = el("a", { target: "_blank", rel: "noopener" }, "plotly figure (JSON)");
    } else media = el("img", { alt: `${this.name} ${contextLabel(s.context)}` });
    const root = el("div", { class: "obj-cell" }, el("div", { class: "obj-ctx" }, contextLabel(s.context)), media, caption);
    return { s, info, media, caption, root, abort: null, url: null };
  }

  show(step) {
    this.state.step = step;
    for (const c of this.cells) {
      const params = { name: c.s.name, context: JSON.stringify(c.s.context), step };
      if (this.type === "figure" && c.info.library === "matplotlib") params.format = "svg";
      const url = objURL(this.runId, "at", params);
      if (c.info.library === "plotly") {  // shown as a link: the browser displays the JSON
        c.media.href = url;
        c.caption.textContent = `step ${step}`;
        this.state.loads++;
        continue;
      }
      // fetch (not src=url) so the caption and the step actually served (the nearest one)
      // come with the bytes; the object URL is what the <img>/<audio> shows
      c.abort?.abort();
      c.abort = new AbortController();
      fetch(url, { credentials: "same-origin", signal: c.abort.signal }).then(async (res) => {
        if (!res.ok) throw new Error((await res.json().catch(() => ({}))).error || `HTTP ${res.status}`);
        const blob = await res.blob();
        if (c.url) URL.revokeObjectURL(c.url);
        c.url = URL.createObjectURL(blob);
        c.media.src = c.url;
        const cap = res.headers.get("X-Caption");
        const at = res.headers.get("X-Step");
        c.caption.textContent = `step ${at}${Number(at) !== step ? ` (nearest to ${step})` : ""}${cap ? ` · ${decodeURIComponent(cap)}` : ""}`;
        this.state.loads++;
        this.state.src = c.url;
      }).catch((err) => {
        if (err.name === "AbortError") return;
        c.caption.textContent = err.message;
        this.state.error = err.message;
      });
    }
  }

  destroy() {
    for (const c of this.cells || []) {
      c.abort?.abort();
      if (c.url) URL.revokeObjectURL(c.url);
    }
  }
}

// Text: a paged table (newest first) of step and text.
class TextView extends View {
  constructor(runId, s, hook) {
    super(s.key, s.key, "text", hook);
    this.runId = runId;
    this.s = s;
    this.offset = 0;
  }

  async load() {
    this.table = el("table", { class: "kv obj-text" });
    this.info = el("span", { class: "muted" });
    this.prev = el("button", { onclick: () => this.page(this.offset - TEXT_PAGE) }, "newer");
    this.next = el("button", { onclick: () => this.page(this.offset + TEXT_PAGE) }, "older");
    this.body.replaceChildren(el("div", { class: "toolbar" }, this.prev, this.next, this.info), this.table);
    await this.page(0);
  }

  async refresh(counts) {
    if (this.changed([this.s], counts) && this.table && this.offset === 0) await this.page(0);  // the newest page is on show
  }

  async page(offset) {
    const p = await getJSON(objURL(this.runId, "texts", { name: this.s.name, context: JSON.stringify(this.s.context), offset: Math.max(0, offset), limit: TEXT_PAGE, desc: 1 }));
    this.offset = p.offset;
    this.table.replaceChildren(el("tr", {}, el("th", {}, "step"), el("th", {}, "text")),
      ...p.rows.map((r) => el("tr", {}, el("td", { class: "mono" }, String(r.step)), el("td", { class: "obj-textcell" }, r.text))));
    this.info.textContent = p.total ? `${p.offset + 1}–${p.offset + p.rows.length} of ${p.total} (newest first)` : "empty";
    this.prev.disabled = p.offset === 0;
    this.next.disabled = p.offset + p.rows.length >= p.total;
    this.state.rows = p.rows.length;
    this.state.total = p.total;
    this.state.offset = p.offset;
  }
}

// A colour ramp from pale to dark blue for heatmaps (t in [0, 1]).
function ramp(t) {
  const a = [247, 251, 255], b = [8, 48, 107];
  return a.map((x, i) => Math.round(x + (b[i] - x) * t));
}

// A distribution: counts over steps as a heatmap (x: steps, y: bins, low values at the
// bottom), each column normalised to its own maximum so the shape shows at every step.
class DistributionView extends View {
  constructor(runId, s, hook) {
    super(s.key, s.key, "distribution", hook);
    this.runId = runId;
    this.s = s;
  }

  async refresh(counts) {
    if (this.changed([this.s], counts)) await this.load();
  }

  async load() {
    const width = Math.max(50, Math.min(2000, Math.floor(this.box.clientWidth - 70) || 300));
    const m = await getJSON(objURL(this.runId, "distribution", { name: this.s.name, context: JSON.stringify(this.s.context), width }));
    const rows = m.counts.length, bins = m.bin_edges.length - 1;
    const canvas = el("canvas", { width: String(rows), height: String(bins), class: "obj-heat" });
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(rows, bins);
    for (let x = 0; x < rows; x++) {
      const row = m.counts[x];
      const top = Math.max(...row) || 1;
      for (let b = 0; b < bins; b++) {
        const [r, g, bl] = ramp(row[b] / top);
        const o = ((bins - 1 - b) * rows + x) * 4;
        img.data[o] = r; img.data[o + 1] = g; img.data[o + 2] = bl; img.data[o + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
    const tip = el("div", { class: "muted obj-tip" }, " ");
    canvas.addEventListener("mousemove", (e) => {
      const r = canvas.getBoundingClientRect();
      const x = Math.min(rows - 1, Math.floor((e.clientX - r.left) / r.width * rows));
      const b = Math.min(bins - 1, bins - 1 - Math.floor((e.clientY - r.top) / r.height * bins));
      const steps = m.steps[x] === m.last_steps[x] ? `step ${m.steps[x]}` : `steps ${m.steps[x]}–${m.last_steps[x]}`;
      tip.textContent = `${steps} · [${formatNumber(m.bin_edges[b])}, ${formatNumber(m.bin_edges[b + 1])}): ${formatNumber(m.counts[x][b])}`;
    });
    const yAxis = el("div", { class: "obj-yaxis mono" }, el("span", {}, formatNumber(m.bin_edges[bins])), el("span", {}, formatNumber(m.bin_edges[0])));
    const xAxis = el("div", { class: "obj-xaxis mono" }, el("span", {}, `step ${m.steps[0]}`), el("span", {}, `step ${m.last_steps[rows - 1]}`));
    const note = m.per_row > 1 ? `${m.count} points, ${m.per_row} averaged per column` : `${m.count} points`;
    this.body.replaceChildren(el("div", { class: "obj-heatwrap" }, yAxis, canvas), xAxis,
      el("div", { class: "muted" }, note + (m.rebinned ? " · re-binned onto common edges" : "")), tip);
    this.state.rows = rows;
    this.state.count = m.count;
    this.state.bins = bins;
    this.state.drawn = true;
  }
}

// An array: its last point as a small heatmap table (or a canvas when it is bigger), with a
// slider over steps; shape and dtype always, a .npy download link.
class ArrayView extends View {
  constructor(runId, s, hook) {
    super(s.key, s.key, "array", hook);
    this.runId = runId;
    this.s = s;
  }

  async load() {
    const info = await getJSON(objURL(this.runId, "steps", { name: this.s.name, context: JSON.stringify(this.s.context), max: 1000 }));
    this.view = el("div", { class: "obj-array" });
    this.meta = el("div", { class: "muted" });
    this.slider = stepSlider(info.steps, (step) => this.show(step));
    this.body.replaceChildren(this.slider.row, this.meta, this.view);
    this.refresh = async (counts) => {
      if (!this.changed([this.s], counts)) return;
      const more = await getJSON(objURL(this.runId, "steps", { name: this.s.name, context: JSON.stringify(this.s.context), max: 1000 }));
      this.slider.grow(more.steps);
    };
    this.slider.fire();
  }

  async show(step) {
    const params = { name: this.s.name, context: JSON.stringify(this.s.context), step };
    const ticket = (this.ticket = (this.ticket || 0) + 1);
    const a = await getJSON(objURL(this.runId, "array", params));
    if (ticket !== this.ticket) return;  // the slider moved on while this one was in flight
    const npy = el("a", { href: objURL(this.runId, "at", { ...params, format: "npy" }), download: `${this.s.name}-${a.step}.npy` }, ".npy");
    this.meta.replaceChildren(`step ${a.step} · shape ${JSON.stringify(a.shape)} ${a.dtype} · min ${formatNumber(a.min)} max ${formatNumber(a.max)} · `, npy);
    this.state.step = a.step;
    this.state.shape = a.shape;
    let grid = a.values;
    if (grid === null || a.shape.length > 2) { this.view.replaceChildren(el("div", { class: "muted" }, "too large to show here: download the .npy")); return; }
    if (a.shape.length === 0) grid = [[grid]];
    else if (a.shape.length === 1) grid = [grid];
    const lo = a.min ?? 0, span = (a.max ?? 1) - lo || 1;
    const cols = grid[0] ? grid[0].length : 0;
    if (grid.length <= 40 && cols <= 40) {
      const cell = (v) => {
        const t = typeof v === "number" ? (v - lo) / span : 0;
        const [r, g, b] = ramp(t);
        return el("td", { style: `background: rgb(${r},${g},${b}); color: ${t > 0.55 ? "#fff" : "#111"}` }, v === null ? "" : formatNumber(v));
      };
      this.view.replaceChildren(el("table", { class: "obj-matrix" }, ...grid.map((row) => el("tr", {}, ...row.map(cell)))));
      this.state.cells = grid.length * cols;
    } else {
      const canvas = el("canvas", { width: String(cols), height: String(grid.length), class: "obj-heat" });
      const ctx = canvas.getContext("2d");
      const img = ctx.createImageData(cols, grid.length);
      grid.forEach((row, y) => row.forEach((v, x) => {
        const [r, g, b] = ramp(typeof v === "number" ? (v - lo) / span : 0);
        const o = (y * cols + x) * 4;
        img.data[o] = r; img.data[o + 1] = g; img.data[o + 2] = b; img.data[o + 3] = 255;
      }));
      ctx.putImageData(img, 0, 0);
      this.view.replaceChildren(canvas);
      this.state.cells = grid.length * cols;
    }
  }
}
