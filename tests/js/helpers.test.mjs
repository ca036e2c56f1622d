// Unit tests of the UI's pure JS helpers, run by tests/test_ui_js.py with `node --test`.
import test from "node:test";
import assert from "node:assert/strict";

import { PALETTE, colorAt, colorsByValue, withAlpha } from "../../src/runstore/ui/static/colors.js";
import { completionContext, completions, differingKeys, flatten, formatDuration, formatNumber,
         rangeBetween, visibleRange } from "../../src/runstore/ui/static/format.js";

test("the first colours come from the palette, later ones are distinct hues", () => {
  assert.equal(colorAt(0), PALETTE[0]);
  assert.equal(colorAt(9), PALETTE[9]);
  const many = Array.from({ length: 1000 }, (_, i) => colorAt(i));
  assert.equal(new Set(many).size, 1000);
  assert.equal(colorAt(500), colorAt(500)); // stable
  assert.throws(() => colorAt(-1), RangeError);
  assert.throws(() => colorAt(1.5), RangeError);
});

test("equal key values share a colour, in order of first appearance", () => {
  const { colors, legend } = colorsByValue(["lstm", "gru", "lstm", null, 3, "3"]);
  assert.equal(colors[0], colors[2]);
  assert.notEqual(colors[0], colors[1]);
  assert.equal(colors[0], PALETTE[0]);
  assert.equal(legend.size, 4); // lstm, gru, null; 3 and "3" print alike and share one
  assert.equal(colors[4], colors[5]);
});

test("bands use a translucent colour", () => {
  assert.equal(withAlpha("#ff0000", 0.2), "rgba(255, 0, 0, 0.2)");
  assert.equal(withAlpha("hsl(10.0, 65%, 38%)", 0.5), "hsla(10.0, 65%, 38%, 0.5)");
});

test("numbers and durations are formatted compactly", () => {
  assert.equal(formatNumber(3), "3");
  assert.equal(formatNumber(0.123456789), "0.12346");
  assert.equal(formatNumber(1.5e-7), "1.500e-7");
  assert.equal(formatNumber(null), "");
  assert.equal(formatNumber(NaN), "NaN");
  assert.equal(formatDuration(0.25), "250 ms");
  assert.equal(formatDuration(75), "1 min 15 s");
  assert.equal(formatDuration(7300), "2 h 1 min");
});

test("virtual rows: only the visible range plus overscan", () => {
  assert.deepEqual(visibleRange(0, 280, 28, 100000, 0), [0, 10]);
  assert.deepEqual(visibleRange(28 * 50000, 280, 28, 100000, 8), [49992, 50018]);
  assert.deepEqual(visibleRange(28 * 99995, 280, 28, 100000, 8), [99987, 99999]);
  assert.deepEqual(rangeBetween(7, 3), [3, 7]);
});

test("autocomplete completes run. and seq. names from the schema", () => {
  const schema = { attributes: ["name", "status"], params: [{ key: "hparams.lr" }, { key: "hparams.layers" }],
                   seq_fields: ["name", "last"], contexts: { subset: ["train"] } };
  const text = "run.hparams.l";
  const ctx = completionContext(text, text.length);
  assert.deepEqual(ctx, { root: "run", path: "hparams.l", start: 0 });
  assert.deepEqual(completions(ctx, schema), ["run.hparams.lr", "run.hparams.layers"]);
  const t2 = "run.name == 'x' and seq.con";
  assert.deepEqual(completions(completionContext(t2, t2.length), schema), ["seq.context.subset"]);
  assert.equal(completionContext("'run.x", 6), null); // inside a string literal
  assert.equal(completionContext("abc", 3), null);
});

test("params diff flattens nested params and keeps the differing keys", () => {
  const a = flatten({ hparams: { lr: 0.1, model: { layers: 2 } }, seed: 1 });
  const b = flatten({ hparams: { lr: 0.1, model: { layers: 3 } } });
  assert.deepEqual(a, { "hparams.lr": 0.1, "hparams.model.layers": 2, seed: 1 });
  assert.deepEqual(differingKeys([a, b]), ["hparams.model.layers", "seed"]);
});
