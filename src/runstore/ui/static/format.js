// Formatting and small pure helpers shared by the pages (tested with `node --test`).

export function formatNumber(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "bigint") v = Number(v);
  if (typeof v !== "number") return String(v);
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v) && Math.abs(v) < 1e15) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(3);
  return String(Number(v.toPrecision(5)));
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60), s = Math.round(seconds % 60);
  if (m < 60) return `${m} min ${s} s`;
  const h = Math.floor(m / 60);
  return `${h} h ${m % 60} min`;
}

export function formatTime(unixSeconds) {
  if (!Number.isFinite(unixSeconds)) return "";
  const d = new Date(unixSeconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

// The inclusive index range [lo, hi] between two clicked rows (shift-click selection).
export function rangeBetween(a, b) {
  return a <= b ? [a, b] : [b, a];
}

// Which rows of a virtual list are visible (plus an overscan margin) for a scroll position.
export function visibleRange(scrollTop, viewHeight, rowHeight, total, overscan = 8) {
  const first = Math.max(0, Math.floor(scrollTop / rowHeight) - overscan);
  const last = Math.min(total - 1, Math.ceil((scrollTop + viewHeight) / rowHeight) + overscan);
  return [first, last];
}

// The part of a query before the caret that autocomplete should complete:
// "run.hparams.l" -> {root: "run", path: "hparams.l", start}; null when not in a name.
export function completionContext(text, caret) {
  const before = text.slice(0, caret);
  const m = /(?:^|[^\w.\]'"])((run|seq|metric)\.([\w.]*))$/.exec(before);
  if (!m) return null;
  return { root: m[2], path: m[3], start: caret - m[1].length };
}

// Candidate completions for a context, from the /api/schema answer.
export function completions(ctx, schema, limit = 50) {
  if (!ctx || !schema) return [];
  let keys;
  if (ctx.root === "run") {
    keys = [...schema.attributes, ...schema.params.map((p) => p.key)];
  } else {
    keys = [...schema.seq_fields, ...Object.keys(schema.contexts).map((c) => `context.${c}`)];
  }
  const want = ctx.path.toLowerCase();
  const starts = keys.filter((k) => k.toLowerCase().startsWith(want));
  const inside = keys.filter((k) => !k.toLowerCase().startsWith(want) && k.toLowerCase().includes(want));
  return [...new Set([...starts, ...inside])].slice(0, limit).map((k) => `${ctx.root}.${k}`);
}

// Flatten a nested params object to dotted keys (for diffs and search).
export function flatten(obj, prefix = "", out = {}) {
  if (obj !== null && typeof obj === "object" && !Array.isArray(obj)) {
    const keys = Object.keys(obj);
    if (!keys.length && prefix) out[prefix] = {};
    for (const k of keys) flatten(obj[k], prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) {
    out[prefix] = obj;
  }
  return out;
}

// Keys whose values differ between objects (missing counts as a difference).
export function differingKeys(flats) {
  const all = new Set(flats.flatMap((f) => Object.keys(f)));
  return [...all].sort().filter((k) => {
    const vals = flats.map((f) => (k in f ? JSON.stringify(f[k]) : "\u0000missing"));
    return new Set(vals).size > 1;
  });
}
