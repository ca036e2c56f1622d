// The runs page: query box (errors inline, autocomplete), virtualised table fetched a page
// at a time with only the chosen columns, sort, selection, group counts, tag/archive edits,
// and live refresh of running runs.

import { ApiError, getArrow, getJSON, query, sendJSON } from "./api.js";
import { completionContext, completions, formatDuration, formatNumber, formatTime, rangeBetween } from "./format.js";
import { VirtualList } from "./vlist.js";

const PAGE = 100;
const ROW = 28;
const BASE = [
  { key: "_sel", title: "", width: 40 },
  { key: "handle", title: "id", width: 92, sort: "id", mono: true },
  { key: "name", title: "name", width: 190, sort: "name" },
  { key: "experiment", title: "experiment", width: 110, sort: "experiment" },
  { key: "status", title: "status", width: 90, sort: "status" },
  { key: "tags", title: "tags", width: 150 },
  { key: "created_at", title: "created", width: 135, sort: "created_at" },
  { key: "duration", title: "duration", width: 95, sort: "duration", num: true },
];

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return e;
}

function rowsOf(table) {
  const names = table.schema.fields.map((f) => f.name);
  const cols = names.map((n) => table.getChild(n));
  const out = [];
  for (let i = 0; i < table.numRows; i++) {
    const r = {};
    names.forEach((n, j) => {
      let v = cols[j].get(i);
      if (v && typeof v === "object" && typeof v.toArray === "function") v = Array.from(v.toArray());
      if (typeof v === "bigint") v = Number(v);
      r[n] = v;
    });
    out.push(r);
  }
  return out;
}

export class RunsPage {
  constructor(root, params, state, hook, navigate) {
    this.root = root;
    this.state = state;
    this.hook = hook;
    this.navigate = navigate;
    this.q = params.get("q") ?? state.q ?? "";
    this.sort = params.get("sort") || "";
    this.desc = params.get("desc") !== "0";
    this.columns = params.getAll("col");
    if (!this.columns.length) this.columns = JSON.parse(sessionStorage.getItem("runstore.cols") || "[]");
    this.pages = new Map();
    this.loading = new Map();
    this.total = 0;
    this.generation = 0;
    this.lastClicked = null;
    this.schema = null;
    hook.runs = { total: 0, q: this.q, error: null, rendered: 0, loadedPages: 0, columns: this.columns, ready: false };
    this.build();
    getJSON("/api/schema").then((s) => { this.schema = s; this.buildColumnPicker(); }).catch(() => {});
    this.reload();
    this.timer = setInterval(() => this.live(), 2000);
    this.tick = 0;
  }

  destroy() {
    clearInterval(this.timer);
    this.vlist?.destroy();
  }

  // -- layout -------------------------------------------------------------------------------
  build() {
    this.input = el("input", { type: "text", spellcheck: "false", placeholder: "query, e.g. run.hparams.lr < 0.01 and seq.name == 'loss'", "aria-label": "query" });
    this.input.value = this.q;
    this.error = el("div", { class: "query-error", role: "alert" });
    this.warning = el("div", { class: "query-warning" });
    this.suggest = el("div", { class: "suggest", hidden: "" });
    const box = el("div", { class: "query" }, this.input, this.suggest, this.error, this.warning);
    this.count = el("span", { class: "muted", id: "run-count" });
    this.picker = el("div", { class: "columns-picker" }, "loading keys…");
    const columns = el("details", {}, el("summary", {}, "Columns"), el("div", { class: "panel" }, this.picker));
    this.groupInput = el("input", { type: "text", placeholder: "group by (e.g. hparams.model)", size: "24", "aria-label": "group by" });
    this.groups = el("div", { class: "groups" });
    const bar = el("div", { class: "toolbar" },
      this.count,
      el("button", { onclick: () => this.selectAllMatching(), id: "select-all" }, "Select all matching"),
      el("button", { onclick: () => this.clearSelection() }, "Clear selection"),
      el("button", { onclick: () => this.openExplorer(), id: "open-explorer" }, "Explore curves"),
      el("button", { onclick: () => this.openCompare(), id: "open-compare" }, "Compare"),
      el("button", { onclick: () => this.bulk({ archived: true }) }, "Archive"),
      el("button", { onclick: () => this.bulk({ archived: false }) }, "Unarchive"),
      el("button", { onclick: () => { const t = prompt("Tag to add to the selected runs"); if (t) this.bulk({ add_tags: [t] }); } }, "Add tag"),
      el("button", { onclick: () => { const t = prompt("Tag to remove from the selected runs"); if (t) this.bulk({ remove_tags: [t] }); } }, "Remove tag"),
      this.groupInput, columns);
    this.head = el("div", { class: "vhead" });
    this.body = el("div", { class: "vbody", id: "runs-body" });
    const table = el("div", { class: "vtable" }, this.head, this.body);
    this.root.append(box, bar, this.groups, table);

    let debounce = 0;
    this.input.addEventListener("input", () => {
      this.updateSuggest();
      clearTimeout(debounce);
      debounce = setTimeout(() => this.setQuery(this.input.value), 500);
    });
    this.input.addEventListener("keydown", (e) => this.onKey(e));
    this.input.addEventListener("blur", () => setTimeout(() => { this.suggest.hidden = true; }, 150));
    this.groupInput.addEventListener("change", () => this.loadGroups());
    this.vlist = new VirtualList(this.body, { rowHeight: ROW, total: 0, renderRow: (i) => this.renderRow(i),
                                              onRange: (a, b) => this.ensure(a, b) });
    this.renderHead();
  }

  allColumns() {
    return [...BASE, ...this.columns.map((c) => ({ key: c, title: c, width: 130, sort: c, num: true }))];
  }

  renderHead() {
    const cells = this.allColumns().map((c) => {
      const arrow = c.sort && c.sort === this.sort ? (this.desc ? " ▼" : " ▲") : "";
      const cell = el("div", { class: "hcell", title: c.title, "data-key": c.key }, c.title, el("span", { class: "arrow" }, arrow));
      cell.style.width = `${c.width}px`;
      if (c.key === "_sel") {
        cell.textContent = "";
      } else if (c.sort) {
        cell.addEventListener("click", () => {
          if (this.sort === c.sort) this.desc = !this.desc;
          else { this.sort = c.sort; this.desc = false; }
          this.reload();
        });
      }
      return cell;
    });
    const width = this.allColumns().reduce((a, c) => a + c.width, 0);
    this.head.replaceChildren(...cells);
    this.rowWidth = width;
  }

  buildColumnPicker() {
    const s = this.schema;
    const options = [
      ...s.params.map((p) => ({ key: p.key, note: p.varies ? "" : " (same everywhere)" })),
      ...s.sequences.flatMap((q) => ["last", "min", "max"].map((f) => ({ key: `${q.key}.${f}`, note: "" }))),
    ];
    this.picker.replaceChildren(...options.map((o) => {
      const cb = el("input", { type: "checkbox", value: o.key });
      cb.checked = this.columns.includes(o.key);
      cb.addEventListener("change", () => {
        this.columns = cb.checked ? [...this.columns, o.key] : this.columns.filter((c) => c !== o.key);
        sessionStorage.setItem("runstore.cols", JSON.stringify(this.columns));
        this.hook.runs.columns = this.columns;
        this.renderHead();
        this.reload();
      });
      return el("label", {}, cb, ` ${o.key}`, el("span", { class: "muted" }, o.note));
    }));
  }

  // -- query and autocomplete -----------------------------------------------------------------
  setQuery(q) {
    if (q === this.q && !this.hook.runs.error) return;
    this.q = q;
    this.state.q = q;
    this.state.saveSelection();
    this.reload();
  }

  onKey(e) {
    const open = !this.suggest.hidden && this.suggest.childElementCount > 0;
    if (open && (e.key === "ArrowDown" || e.key === "ArrowUp")) {
      e.preventDefault();
      const items = [...this.suggest.children];
      const i = items.findIndex((x) => x.classList.contains("on"));
      const j = e.key === "ArrowDown" ? Math.min(items.length - 1, i + 1) : Math.max(0, i - 1);
      items.forEach((x, k) => x.classList.toggle("on", k === j));
      return;
    }
    if (open && (e.key === "Tab" || e.key === "Enter")) {
      const on = this.suggest.querySelector(".on") || this.suggest.firstChild;
      if (on) { e.preventDefault(); this.accept(on.textContent); return; }
    }
    if (e.key === "Escape") { this.suggest.hidden = true; return; }
    if (e.key === "Enter") { e.preventDefault(); this.suggest.hidden = true; this.q = null; this.setQuery(this.input.value); }
  }

  updateSuggest() {
    const ctx = completionContext(this.input.value, this.input.selectionStart);
    const items = completions(ctx, this.schema);
    this.completion = ctx;
    this.hook.runs.suggestions = items;
    if (!items.length || (items.length === 1 && items[0] === `${ctx.root}.${ctx.path}`)) {
      this.suggest.hidden = true;
      return;
    }
    this.suggest.replaceChildren(...items.map((t, i) => {
      const d = el("div", { class: i === 0 ? "on" : "" }, t);
      d.addEventListener("mousedown", (e) => { e.preventDefault(); this.accept(t); });
      return d;
    }));
    this.suggest.hidden = false;
  }

  accept(text) {
    const ctx = this.completion;
    if (!ctx) return;
    const v = this.input.value;
    const caret = this.input.selectionStart;
    this.input.value = v.slice(0, ctx.start) + text + v.slice(caret);
    const pos = ctx.start + text.length;
    this.input.setSelectionRange(pos, pos);
    this.suggest.hidden = true;
    this.input.focus();
  }

  // -- data -----------------------------------------------------------------------------------
  params(offset, limit) {
    return query({ q: this.q, sort: this.sort, desc: this.desc ? "1" : "0", offset, limit, col: this.columns });
  }

  async reload() {
    this.generation += 1;
    this.pages.clear();
    this.loading.clear();
    this.renderHead();
    const url = new URL(location.href);
    url.search = query({ q: this.q, sort: this.sort, desc: this.desc ? "" : "0", col: this.columns });
    history.replaceState(null, "", url);
    Object.assign(this.hook.runs, { q: this.q, ready: false });
    try {
      await this.loadPage(0, this.generation, true);
      this.error.textContent = "";
      this.input.classList.remove("bad");
      this.hook.runs.error = null;
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      this.input.classList.add("bad");
      this.error.textContent = err.body.message || err.message;
      this.hook.runs.error = err.body;
      this.total = 0;
      this.vlist.setTotal(0);
      this.count.textContent = "";
    }
    this.hook.runs.ready = true;
    if (this.groupInput.value) this.loadGroups();
  }

  async loadPage(p, gen, first = false) {
    if (this.loading.has(p)) return this.loading.get(p);
    const job = (async () => {
      const t0 = performance.now();
      const { table, headers } = await getArrow(`/api/runs?${this.params(p * PAGE, PAGE)}`);
      if (gen !== this.generation) return;
      this.total = Number(headers.get("X-Total-Count"));
      if (first) {  // a query that names something no run has: say so under the box
        const notes = JSON.parse(headers.get("X-Query-Warnings") || "[]");
        this.warning.textContent = notes.join("\n");
        this.hook.runs.warnings = notes;
      }
      this.pages.set(p, rowsOf(table));
      this.hook.runs.loadedPages = this.pages.size;
      this.hook.runs.lastFetchMs = performance.now() - t0;
      this.count.textContent = `${this.total.toLocaleString()} run${this.total === 1 ? "" : "s"}`;
      this.hook.runs.total = this.total;
      if (first || this.vlist.total !== this.total) this.vlist.setTotal(this.total);
      else this.vlist.render(false, true);
      this.hook.runs.rendered = this.vlist.rowCount();
    })();
    this.loading.set(p, job);
    try { await job; } finally { this.loading.delete(p); }
  }

  ensure(first, last) {
    if (!this.vlist) return;  // the first render happens inside the VirtualList constructor
    this.hook.runs.rendered = this.vlist.rowCount();
    for (let p = Math.floor(first / PAGE); p <= Math.floor(last / PAGE); p++) {
      if (!this.pages.has(p) && p * PAGE < this.total) this.loadPage(p, this.generation).catch(() => {});
    }
  }

  row(i) {
    const page = this.pages.get(Math.floor(i / PAGE));
    return page ? page[i % PAGE] : null;
  }

  // Live: refetch the pages in view while they show running runs (and now and then anyway,
  // for new runs); the table is not reloaded and the scroll position stays.
  async live() {
    if (this.hook.runs.error || this.editing) return;  // never redraw under an open tag editor
    this.tick += 1;
    const [a, b] = this.vlist.range;
    let running = false;
    for (let i = a; i <= b; i++) if (this.row(i)?.status === "running") running = true;
    if (!running && this.tick % 5) return;
    const gen = this.generation;
    for (let p = Math.floor(a / PAGE); p <= Math.floor(Math.max(a, b) / PAGE); p++) {
      try {
        const { table, headers } = await getArrow(`/api/runs?${this.params(p * PAGE, PAGE)}`);
        if (gen !== this.generation) return;
        this.pages.set(p, rowsOf(table));
        const total = Number(headers.get("X-Total-Count"));
        if (total !== this.total) { this.total = total; this.vlist.setTotal(total); this.hook.runs.total = total; }
      } catch (e) { return; }
    }
    this.hook.runs.liveUpdates = (this.hook.runs.liveUpdates || 0) + 1;
    if (!this.editing) this.vlist.render(true);
  }

  // -- rows -----------------------------------------------------------------------------------
  isSelected(id) {
    return this.state.selection.allMatching !== null || this.state.selection.ids.has(id);
  }

  renderRow(i) {
    const r = this.row(i);
    const row = el("div", { class: "vrow", "data-index": String(i) });
    row.style.width = `${this.rowWidth}px`;
    if (!r) {
      row.dataset.placeholder = "1";  // rebuilt when its page arrives
      row.append(el("div", { class: "cell muted" }, "…"));
      return row;
    }
    row.dataset.id = r.id;
    if (this.isSelected(r.id)) row.classList.add("sel");
    if (r.archived) row.classList.add("archived");
    for (const c of this.allColumns()) {
      let cell;
      if (c.key === "_sel") {
        const cb = el("input", { type: "checkbox", "aria-label": `select ${r.name || r.handle}` });
        cb.checked = this.isSelected(r.id);
        cb.addEventListener("click", (e) => this.onSelect(i, r.id, cb.checked, e.shiftKey));
        cell = el("div", { class: "cell" }, cb);
      } else if (c.key === "name") {
        cell = el("div", { class: "cell" }, el("a", { href: `/run/${r.id}`, "data-link": "" }, r.name || "(unnamed)"));
      } else if (c.key === "status") {
        cell = el("div", { class: "cell" }, el("span", { class: `status status-${r.status}` }, r.status));
      } else if (c.key === "tags") {
        cell = el("div", { class: "cell", title: "double-click to edit" }, ...(r.tags || []).map((t) => el("span", { class: "tag" }, t)));
        cell.addEventListener("dblclick", () => this.editTags(cell, r));
      } else if (c.key === "created_at") {
        cell = el("div", { class: "cell" }, formatTime(r.created_at));
      } else if (c.key === "duration") {
        cell = el("div", { class: "cell num" }, formatDuration(r.duration));
      } else {
        const v = r[c.key];
        cell = el("div", { class: `cell${c.num && typeof v === "number" ? " num" : ""}${c.mono ? " mono" : ""}`, title: String(v ?? "") },
          typeof v === "number" ? formatNumber(v) : Array.isArray(v) ? v.join(", ") : v ?? "");
      }
      cell.style.width = `${c.width}px`;
      row.append(cell);
    }
    return row;
  }

  editTags(cell, r) {
    const input = el("input", { class: "tags-edit", type: "text", "aria-label": "tags" });
    this.editing = true;
    const done = () => { this.editing = false; this.vlist.render(true); };
    input.value = (r.tags || []).join(", ");
    cell.replaceChildren(input);
    input.focus();
    input.addEventListener("keydown", async (e) => {
      if (e.key === "Escape") done();
      if (e.key !== "Enter") return;
      const tags = input.value.split(",").map((t) => t.trim()).filter(Boolean);
      const res = await sendJSON(`/api/runs/${r.id}`, "PATCH", { tags });
      r.tags = res.tags;
      done();
    });
    input.addEventListener("blur", () => { if (this.editing) done(); });
  }

  async onSelect(i, id, checked, shift) {
    const sel = this.state.selection;
    if (sel.allMatching !== null) {  // leave "all matching" for an explicit list
      const ids = await getJSON(`/api/ids?${query({ q: sel.allMatching })}`);
      sel.ids = new Set(ids);
      sel.allMatching = null;
    }
    if (shift && this.lastClicked !== null) {
      const [lo, hi] = rangeBetween(this.lastClicked, i);
      const ids = await getJSON(`/api/ids?${query({ q: this.q, sort: this.sort, desc: this.desc ? "1" : "0", offset: lo, limit: hi - lo + 1 })}`);
      for (const x of ids) checked ? sel.ids.add(x) : sel.ids.delete(x);
    } else if (checked) sel.ids.add(id);
    else sel.ids.delete(id);
    this.lastClicked = i;
    this.state.saveSelection();
    this.hook.runs.selected = sel.ids.size;
    this.vlist.render(true);
  }

  selectAllMatching() {
    this.state.selection.allMatching = this.q || "";
    this.state.selection.ids = new Set();
    this.state.saveSelection();
    this.hook.runs.selected = this.total;
    this.vlist.render(true);
  }

  clearSelection() {
    this.state.selection.allMatching = null;
    this.state.selection.ids = new Set();
    this.state.saveSelection();
    this.hook.runs.selected = 0;
    this.vlist.render(true);
  }

  async selectedIds() {
    const sel = this.state.selection;
    if (sel.allMatching !== null) return getJSON(`/api/ids?${query({ q: sel.allMatching })}`);
    return [...sel.ids];
  }

  async bulk(change) {
    const runs = await this.selectedIds();
    if (!runs.length) { alert("Select runs first (checkboxes, shift-click for ranges)."); return; }
    await sendJSON("/api/runs/bulk", "POST", { runs, ...change });
    this.reload();
  }

  openExplorer() {
    this.navigate("/explorer");
  }

  async openCompare() {
    const ids = await this.selectedIds();
    if (ids.length < 2 || ids.length > 10) { alert("Select 2 to 10 runs to compare."); return; }
    this.navigate(`/compare?${query({ runs: ids.join(",") })}`);
  }

  async loadGroups() {
    const key = this.groupInput.value.trim();
    if (!key) { this.groups.replaceChildren(); return; }
    try {
      const groups = await getJSON(`/api/groups?${query({ q: this.q, key })}`);
      this.hook.runs.groups = groups;
      const rows = groups.slice(0, 50).map((g) => {
        const value = g.value === null ? "(missing)" : String(g.value);
        const link = el("a", { href: "#" }, value);
        link.addEventListener("click", (e) => {
          e.preventDefault();
          const lit = typeof g.value === "string" ? JSON.stringify(g.value) : g.value === null ? "None" : String(g.value);
          const cond = `run.${key} ${g.value === null ? "is None" : `== ${lit}`}`;
          this.input.value = this.q ? `(${this.q}) and ${cond}` : cond;
          this.setQuery(this.input.value);
        });
        return el("tr", {}, el("td", {}, link), el("td", { class: "num" }, String(g.count)));
      });
      this.groups.replaceChildren(el("table", {}, el("tr", {}, el("th", {}, key), el("th", {}, "runs")), ...rows));
    } catch (err) {
      this.groups.replaceChildren(el("div", { class: "error-box" }, err.message));
    }
  }
}

export { el, rowsOf };
