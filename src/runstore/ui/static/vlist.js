// A virtual list: fixed row height, only the rows in view (plus a small margin) are in the
// DOM, whatever the total (100,000 runs, 1,000 legend entries).

import { visibleRange } from "./format.js";

export class VirtualList {
  // body: a scrollable element; renderRow(i) returns an element for row i.
  constructor(body, { rowHeight = 28, total = 0, renderRow, onRange = () => {} }) {
    this.body = body;
    this.rowHeight = rowHeight;
    this.total = total;
    this.renderRow = renderRow;
    this.onRange = onRange;
    this.spacer = document.createElement("div");
    this.spacer.style.position = "relative";
    this.body.replaceChildren(this.spacer);
    this.range = [0, -1];
    this._frame = 0;
    this._onScroll = () => {
      if (this._frame) return;
      this._frame = requestAnimationFrame(() => { this._frame = 0; this.render(); });
    };
    this.body.addEventListener("scroll", this._onScroll, { passive: true });
    this.setTotal(total);
  }

  setTotal(total) {
    this.total = total;
    this.spacer.style.height = `${total * this.rowHeight}px`;
    this.render(true);
  }

  // Re-render the rows in view; force re-creates them all (the data changed), otherwise rows
  // still in view are kept and only the ones scrolled in are built.
  // fill = true rebuilds only the placeholder rows (a page of data arrived).
  render(force = false, fill = false) {
    const [first, last] = visibleRange(this.body.scrollTop, this.body.clientHeight || 600, this.rowHeight, this.total);
    if (!force && !fill && first === this.range[0] && last === this.range[1]) return;
    this.range = [first, last];
    const old = force ? new Map() : this.rows || new Map();
    const rows = new Map();
    for (let i = first; i <= last; i++) {
      let el = old.get(i);
      if (!el || el.dataset.placeholder) {
        if (el) el.remove();
        el = this.renderRow(i);
        el.style.top = `${i * this.rowHeight}px`;
        el.style.height = `${this.rowHeight}px`;
      }
      rows.set(i, el);
    }
    for (const [i, el] of old) if (!rows.has(i)) el.remove();
    if (force) this.spacer.replaceChildren(...rows.values());
    else for (const el of rows.values()) if (el.parentNode !== this.spacer) this.spacer.append(el);
    this.rows = rows;
    this.onRange(first, last);
  }

  rowCount() {
    return this.spacer.childElementCount;
  }

  destroy() {
    this.body.removeEventListener("scroll", this._onScroll);
    if (this._frame) cancelAnimationFrame(this._frame);
  }
}
