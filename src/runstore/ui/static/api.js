// Talking to the server: Arrow IPC for tables and points, JSON for small answers.

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

async function check(res) {
  if (res.ok) return res;
  let body = null;
  try { body = await res.json(); } catch (e) { body = { error: `HTTP ${res.status}` }; }
  throw new ApiError(res.status, body);
}

export function query(params) {
  const sp = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === "") continue;
    if (Array.isArray(v)) v.forEach((x) => sp.append(k, x));
    else sp.append(k, String(v));
  }
  return sp.toString();
}

export async function getJSON(url, options = {}) {
  const res = await check(await fetch(url, { credentials: "same-origin", ...options }));
  return res.json();
}

export async function sendJSON(url, method, body) {
  const res = await check(await fetch(url, {
    method, credentials: "same-origin",
    headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  }));
  return res.json();
}

// An Arrow table (and the response headers) from a GET or a JSON POST.
export async function getArrow(url, body = null, signal = undefined) {
  const init = body === null ? { credentials: "same-origin", signal } : {
    method: "POST", credentials: "same-origin", signal,
    headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const res = await check(await fetch(url, init));
  const buf = new Uint8Array(await res.arrayBuffer());
  return { table: window.Arrow.tableFromIPC(buf), headers: res.headers, bytes: buf.byteLength };
}

// The JSON metadata the server puts on an Arrow schema.
export function tableMeta(table) {
  const raw = table.schema.metadata.get("runstore");
  return raw ? JSON.parse(raw) : {};
}

// Columns as plain arrays of JS values.
export function column(table, name) {
  const col = table.getChild(name);
  if (!col) return new Array(table.numRows).fill(null);
  return col.toArray();
}

// Read an Arrow IPC stream record batch by record batch as it arrives, so a page can draw
// the first curves before the last ones have left the server.  onSchema(meta) is called
// once, onBatch(batch) for each record batch; resolves to the number of bytes read.
export async function streamArrow(url, body, signal, onSchema, onBatch) {
  const res = await check(await fetch(url, {
    method: "POST", credentials: "same-origin", signal,
    headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  }));
  let bytes = 0;
  const counted = res.body.pipeThrough(new TransformStream({
    transform(chunk, ctl) { bytes += chunk.byteLength; ctl.enqueue(chunk); },
  }));
  const reader = await window.Arrow.RecordBatchReader.from(counted);
  await reader.open();
  const raw = reader.schema.metadata.get("runstore");
  onSchema(raw ? JSON.parse(raw) : {}, reader.schema);
  for await (const batch of reader) onBatch(batch);
  return bytes;
}
