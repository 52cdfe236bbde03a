// The dashboard's API client: the bearer token (kept in sessionStorage, sent as
// `Authorization: Bearer`), JSON requests whose errors are the API's problem+json, and
// Server-Sent Events read through fetch (EventSource cannot send an Authorization header).

const TOKEN_KEY = "mlp-lab.token";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function headers(extra) {
  const all = { ...extra };
  const t = token();
  if (t) all.Authorization = `Bearer ${t}`;
  return all;
}

/** A 4xx/5xx answer: `status`, the problem's `code` and the whole `problem` (or null). */
export class ApiError extends Error {
  constructor(status, problem) {
    super(describe(status, problem));
    this.status = status;
    this.problem = problem;
    this.code = problem ? problem.code : undefined;
  }
}

function describe(status, problem) {
  if (!problem) return `HTTP ${status}`;
  const head = problem.detail || problem.title || problem.error || `HTTP ${status}`;
  const fields = (problem.errors || []).map((e) => (e.field ? `${e.field}: ${e.message}` : e.message));
  return [head, ...fields].join("\n");
}

async function failure(response) {
  const type = response.headers.get("Content-Type") || "";
  const problem = type.includes("json") ? await response.json().catch(() => null) : null;
  return new ApiError(response.status, problem);
}

/** `method path` with an optional JSON body; the parsed JSON answer, or an ApiError. */
export async function request(method, path, body, signal) {
  const init = { method, headers: headers({ Accept: "application/json" }), signal };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await failure(response);
  return response.status === 204 ? null : response.json();
}

export const get = (path, signal) => request("GET", path, undefined, signal);
export const post = (path, body, signal) => request("POST", path, body, signal);

/** The answer as a Blob (for an image fetched with the token), or an ApiError. */
export async function blob(path, signal) {
  const response = await fetch(path, { headers: headers({}), signal });
  if (!response.ok) throw await failure(response);
  return response.blob();
}

/** Whether `error` says that this server has no such route (a build without that part). */
export function isMissingRoute(error) {
  return error instanceof ApiError && error.status === 404 && error.code === "route_not_found";
}

/** The newest `n` items of a listing (listings are oldest first), newest first. */
export async function newest(path, n) {
  let page = await get(`${path}?limit=${n}`);
  if (page.total > page.items.length) {
    page = await get(`${path}?limit=${n}&offset=${Math.max(0, page.total - n)}`);
  }
  return { total: page.total, items: page.items.slice().reverse() };
}

/**
 * Reads `path` as an event stream and calls `onEvent(name, data, id)` for each event (`data`
 * parsed as JSON when it is, `id` its `id:` field or undefined), until the server closes it
 * (resolves) or `signal` aborts (rejects with an AbortError). `lastEventId`, when given, is
 * sent as `Last-Event-ID`, so the stream starts after that event.
 */
export async function stream(path, onEvent, signal, lastEventId) {
  const extra = { Accept: "text/event-stream" };
  if (lastEventId !== undefined) extra["Last-Event-ID"] = lastEventId;
  const response = await fetch(path, { headers: headers(extra), signal });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    // Lines end with \n, \r\n or \r; a \r at the end of a chunk waits for the next one.
    buffer = (buffer + value).replace(/\r\n|\r(?=.)/gs, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      dispatch(buffer.slice(0, end), onEvent);
      buffer = buffer.slice(end + 2);
    }
  }
}

function dispatch(block, onEvent) {
  let name = "message";
  let id;
  const data = [];
  for (const line of block.split("\n")) {
    if (line === "" || line.startsWith(":")) continue; // a comment: the keep-alive
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") name = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
  }
  if (data.length === 0) return;
  const text = data.join("\n");
  let parsed = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: handed over as text
  }
  onEvent(name, parsed, id);
}
