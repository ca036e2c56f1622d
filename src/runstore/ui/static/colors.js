// Colour assignment for many series: a fixed palette for the first colours (easy to tell
// apart), then golden-angle hues so that 1,000 runs still get distinct, stable colours.
// Pure functions: tested with `node --test` (tests/js/colors.test.mjs).

export const PALETTE = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
];

// The colour of the i-th series (or of the i-th distinct value of a colour key).
export function colorAt(i) {
  if (!Number.isInteger(i) || i < 0) throw new RangeError(`colour index must be a non-negative integer, got ${i}`);
  if (i < PALETTE.length) return PALETTE[i];
  const hue = ((i - PALETTE.length) * 137.508) % 360;   // golden angle: neighbours stay far apart
  const light = 38 + ((i * 7) % 3) * 10;                // three lightness rings
  return `hsl(${hue.toFixed(1)}, 65%, ${light}%)`;
}

// Colours for a list of key values: equal values share a colour, in order of first appearance.
// Returns {colors: [...per value], legend: Map(valueKey -> colour)}.
export function colorsByValue(values) {
  const legend = new Map();
  const colors = values.map((v) => {
    const k = valueKey(v);
    if (!legend.has(k)) legend.set(k, colorAt(legend.size));
    return legend.get(k);
  });
  return { colors, legend };
}

export function valueKey(v) {
  return v === null || v === undefined ? "∅" : typeof v === "string" ? v : JSON.stringify(v);
}

// A translucent version of a colour for bands (hex or hsl).
export function withAlpha(color, alpha) {
  if (color.startsWith("#") && color.length === 7) {
    const n = parseInt(color.slice(1), 16);
    return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
  }
  if (color.startsWith("hsl(")) return color.replace("hsl(", "hsla(").replace(")", `, ${alpha})`);
  return color;
}
