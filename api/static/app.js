// hwnas dashboard: plain modern JS, no build step, nothing loaded from another origin.
//
// Pages (chosen by <body data-page>): "searches" (the list, polled), "search" (one search, live over
// Server-Sent Events read with fetch(), since EventSource cannot send the API key), "device" (LUT
// coverage and predictor accuracy). Every /v1 call carries `Authorization: Bearer <key>`; the key is
// asked for once and kept in localStorage, or taken from the URL fragment `#key=...`.

const KEY_STORAGE = "hwnas.apiKey";
const SVG_NS = "http://www.w3.org/2000/svg";
const LIST_POLL_MS = 2000;
const LOG_TAIL = 200;
const PHASE_COLOURS = { search: "#2f6fdf", netadapt: "#e07b1a", final: "#1a9c5b", baseline: "#8a55c9" };
const PHASES = Object.keys(PHASE_COLOURS);
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

// --- small DOM helpers (text goes in as text nodes: never innerHTML with data) ----------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

function setAttrs(node, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.setAttribute("class", value);
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

const app = () => document.getElementById("app");

// --- formatting --------------------------------------------------------------------------------------

const fmt = {
  pct(v, digits = 1) {
    return v === null || v === undefined || Number.isNaN(v) ? "–" : `${(100 * v).toFixed(digits)}%`;
  },
  ms(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const digits = v >= 100 ? 1 : v >= 10 ? 2 : v >= 1 ? 3 : 4;
    return `${v.toFixed(digits)} ms`;
  },
  count(v) {
    if (v === null || v === undefined) return "–";
    const units = [
      [1e9, "G"],
      [1e6, "M"],
      [1e3, "k"],
    ];
    for (const [size, unit] of units) if (Math.abs(v) >= size) return `${(v / size).toFixed(2)} ${unit}`;
    return String(v);
  },
  num(v, digits = 3) {
    return v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(digits);
  },
  time(v) {
    if (!v) return "–";
    const date = new Date(v);
    return Number.isNaN(date.getTime()) ? String(v) : date.toLocaleString();
  },
  clock(v) {
    if (!v) return "";
    const date = new Date(v);
    return Number.isNaN(date.getTime()) ? "" : date.toLocaleTimeString();
  },
  duration(from, to) {
    if (!from) return "–";
    const ms = (to ? new Date(to) : new Date()) - new Date(from);
    if (!Number.isFinite(ms) || ms < 0) return "–";
    const s = Math.round(ms / 1000);
    return s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${(s / 3600).toFixed(1)} h`;
  },
  short(id) {
    return id ? String(id).slice(0, 10) : "–";
  },
};

// --- the API key -------------------------------------------------------------------------------------

/** A search's phase as a person reads it; `waiting_device`: a remote device is measuring the winner. */
function phaseText(phase) {
  if (phase === "waiting_device") return "waiting for the device to measure";
  return phase ? phase.replace(/_/g, " ") : "";
}

function takeKeyFromFragment() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  const key = params.get("key");
  if (key) {
    localStorage.setItem(KEY_STORAGE, key.trim());
    params.delete("key");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }
}

const getKey = () => localStorage.getItem(KEY_STORAGE) || "";

class NeedKey extends Error {}

class ApiError extends Error {
  constructor(status, detail, problem = {}) {
    super(detail);
    this.status = status;
    this.problem = problem;
  }
}

function renderKeyStatus() {
  const box = document.getElementById("key-status");
  if (!box) return;
  const key = getKey();
  if (!key) return replace(box);
  const shown = key.split("_").slice(0, 2).join("_");
  replace(
    box,
    el("span", { class: "muted", title: "the API key this browser uses" }, `key ${shown}_…`),
    el("button", {
      class: "link",
      type: "button",
      text: "forget",
      onclick: () => {
        localStorage.removeItem(KEY_STORAGE);
        location.reload();
      },
    }),
  );
}

function showKeyForm(message) {
  stopAll();
  const input = el("input", {
    id: "api-key",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "hwnas_…",
    required: true,
  });
  const form = el(
    "form",
    {
      class: "card key-form",
      onsubmit: (event) => {
        event.preventDefault();
        localStorage.setItem(KEY_STORAGE, input.value.trim());
        location.reload();
      },
    },
    el("h1", { text: "API key" }),
    el(
      "p",
      {},
      "Every call to the service needs an API key (create one with ",
      el("code", { text: "hwnas key create NAME" }),
      "). It is kept in this browser only.",
    ),
    message ? el("p", { class: "error", role: "alert", text: message }) : null,
    el("label", { for: "api-key", text: "Key" }),
    el("div", { class: "row" }, input, el("button", { type: "submit", text: "Use this key" })),
  );
  replace(app(), form);
  renderKeyStatus();
  input.focus();
}

async function problemOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const detail = body && body.detail ? String(body.detail) : `${response.status} ${response.statusText}`;
  return new ApiError(response.status, detail, body || {});
}

function authHeaders(extra = {}) {
  const key = getKey();
  if (!key) throw new NeedKey();
  return { Authorization: `Bearer ${key}`, ...extra };
}

async function apiFetch(path, options = {}) {
  const response = await fetch(path, { ...options, headers: authHeaders(options.headers) });
  if (response.status === 401) {
    const problem = await problemOf(response);
    showKeyForm(`The service refused this key: ${problem.message}`);
    throw new NeedKey();
  }
  if (!response.ok) throw await problemOf(response);
  return response;
}

async function api(path, options = {}) {
  const response = await apiFetch(path, { ...options, headers: { Accept: "application/json" } });
  return response.json();
}

function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

// Every page registers its timers and streams here, so a key change or an error stops them all.
const running = { timers: new Set(), controllers: new Set() };

function every(ms, fn) {
  const timer = setInterval(fn, ms);
  running.timers.add(timer);
  return timer;
}

function stopAll() {
  for (const timer of running.timers) clearInterval(timer);
  running.timers.clear();
  for (const controller of running.controllers) controller.abort();
  running.controllers.clear();
}

// --- Server-Sent Events over fetch() -----------------------------------------------------------------

/**
 * Read `path` as an event stream until an `end` event (or `signal` aborts), reconnecting after drops
 * from the last event id seen. Calls `onEvent({id, event, data})` with `data` parsed as JSON when it
 * is JSON; `onState("live"|"reconnecting"|"ended", detail)` as the connection changes.
 */
async function streamEvents(path, { after = 0, signal, onEvent, onState = () => {} }) {
  let last = after;
  let retryMs = 1000;
  let failures = 0;
  let ended = false;
  while (!ended && !signal.aborted) {
    try {
      const separator = path.includes("?") ? "&" : "?";
      const response = await apiFetch(`${path}${separator}after=${last}`, {
        signal,
        headers: { Accept: "text/event-stream", "Last-Event-ID": String(last) },
      });
      onState("live");
      failures = 0;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let current = { id: null, event: "", data: [] };
      const dispatch = () => {
        if (current.id !== null) {
          const id = Number(current.id);
          if (Number.isFinite(id)) last = id;
        }
        if (current.data.length) {
          const text = current.data.join("\n");
          let data = text;
          try {
            data = JSON.parse(text);
          } catch {
            // plain-text data stays a string
          }
          const event = current.event || "message";
          if (event === "end") ended = true;
          onEvent({ id: current.id, event, data });
        } else if (current.event === "end") {
          ended = true;
          onEvent({ id: current.id, event: "end", data: null });
        }
        current = { id: null, event: "", data: [] };
      };
      while (!ended) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let newline;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          let line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          if (line.endsWith("\r")) line = line.slice(0, -1);
          if (line === "") {
            dispatch();
            continue;
          }
          if (line.startsWith(":")) continue; // a comment (keep-alive)
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? "" : line.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          if (field === "data") current.data.push(value);
          else if (field === "event") current.event = value;
          else if (field === "id") current.id = value;
          else if (field === "retry" && /^\d+$/.test(value)) retryMs = Number(value);
        }
      }
      if (ended) {
        reader.cancel().catch(() => {});
        break;
      }
    } catch (error) {
      if (signal.aborted || error instanceof NeedKey) return;
      if (error instanceof ApiError && error.status >= 400 && error.status < 500) {
        onState("failed", error.message);
        return;
      }
      failures += 1;
    }
    if (signal.aborted) return;
    onState("reconnecting");
    await sleep(Math.min(retryMs * 2 ** Math.min(failures, 4), 15000), signal);
  }
  if (ended) onState("ended");
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

// --- shared pieces -----------------------------------------------------------------------------------

function statusPill(status) {
  return el("span", { class: `pill status-${status || "unknown"}`, dataset: { status: status || "" } }, status || "?");
}

function progressBar(progress, status) {
  const fraction = Math.max(0, Math.min(1, Number(progress) || 0));
  const fill = el("div", { class: `bar-fill status-${status || "unknown"}` });
  fill.style.width = `${(100 * fraction).toFixed(1)}%`;
  return el(
    "div",
    {
      class: "progress",
      role: "progressbar",
      "aria-valuemin": 0,
      "aria-valuemax": 100,
      "aria-valuenow": Math.round(100 * fraction),
      dataset: { progress: fraction.toFixed(4) },
    },
    el("div", { class: "bar" }, fill),
    el("span", { class: "bar-label" }, `${Math.round(100 * fraction)}%`),
  );
}

function errorBox(error) {
  const message = error instanceof Error ? error.message : String(error);
  return el("p", { class: "error", role: "alert" }, message);
}

function definitionList(rows, className = "facts") {
  return el(
    "dl",
    { class: className },
    rows.filter(Boolean).map(([term, value]) => el("div", { class: "fact" }, el("dt", {}, term), el("dd", {}, value))),
  );
}

function deviceLink(name) {
  return name ? el("a", { href: `/devices/${encodeURIComponent(name)}` }, name) : "–";
}

function searchName(search) {
  return `${search.space || "?"} · ${search.dataset || "?"}`;
}

// --- page: searches ----------------------------------------------------------------------------------

async function searchesPage() {
  const state = { status: "", offset: 0, limit: 25, busy: false, latest: null };
  const statusSelect = el(
    "select",
    {
      id: "status-filter",
      onchange: () => {
        state.status = statusSelect.value;
        state.offset = 0;
        refresh();
      },
    },
    el("option", { value: "", text: "all" }),
    ["queued", "running", "succeeded", "failed", "cancelled"].map((s) => el("option", { value: s, text: s })),
  );
  const tableBody = el("tbody", { id: "searches-body" });
  const pager = el("div", { class: "pager" });
  const note = el("p", { class: "muted", id: "searches-note" });
  const devicesBox = el("div", { id: "devices-box" }, el("p", { class: "muted", text: "Loading devices…" }));

  replace(
    app(),
    el(
      "section",
      { class: "card" },
      el(
        "div",
        { class: "card-head" },
        el("h1", { text: "Searches" }),
        el("label", { class: "inline" }, "status ", statusSelect),
      ),
      el(
        "table",
        { class: "table", id: "searches-table" },
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            ["search", "status", "phase", "progress", "trials", "budget", "device", "space · dataset", "created"].map(
              (h) => el("th", { text: h }),
            ),
          ),
        ),
        tableBody,
      ),
      note,
      pager,
    ),
    el("section", { class: "card" }, el("h2", { text: "Devices" }), devicesBox),
  );

  function row(search) {
    const href = `/searches/${encodeURIComponent(search.id)}`;
    return el(
      "tr",
      { dataset: { searchId: search.id, status: search.status } },
      el("td", {}, el("a", { href, class: "mono", title: search.id }, fmt.short(search.id))),
      el("td", {}, statusPill(search.status)),
      el("td", { class: "phase", text: phaseText(search.phase) || "–" }),
      el("td", { class: "progress-cell" }, progressBar(search.progress, search.status)),
      el("td", { class: "num" }, `${search.trials_done ?? 0}/${search.trials_total ?? "?"}`),
      el("td", { class: "num" }, fmt.ms(search.budget_ms)),
      el("td", {}, deviceLink(search.device)),
      el("td", { class: "ellipsis", title: searchName(search) }, searchName(search)),
      el("td", { class: "muted" }, fmt.time(search.created_at ?? search.created)),
    );
  }

  async function refresh() {
    if (state.busy) return;
    state.busy = true;
    try {
      const params = { limit: state.limit, offset: state.offset, status: state.status };
      const page = await api(`/v1/searches${query(params)}`);
      state.latest = page;
      const items = page.items || [];
      const empty = el("tr", {}, el("td", { colspan: 9, class: "muted" }, "No searches yet."));
      replace(tableBody, items.length ? items.map(row) : empty);
      const total = page.total ?? items.length;
      const first = items.length ? state.offset + 1 : 0;
      replace(note, `${first}–${state.offset + items.length} of ${total}. `, hintLine(items.length === 0));
      pager.hidden = total <= state.limit && state.offset === 0;
      replace(
        pager,
        el("button", {
          type: "button",
          text: "← newer",
          disabled: state.offset === 0,
          onclick: () => {
            state.offset = Math.max(0, state.offset - state.limit);
            refresh();
          },
        }),
        el("button", {
          type: "button",
          text: "older →",
          disabled: state.offset + items.length >= total,
          onclick: () => {
            state.offset += state.limit;
            refresh();
          },
        }),
      );
    } catch (error) {
      if (!(error instanceof NeedKey)) replace(note, errorBox(error));
    } finally {
      state.busy = false;
    }
  }

  function hintLine(empty) {
    return empty
      ? el(
          "span",
          {},
          "Start one with ",
          el("code", { text: "hwnas search submit --device D --budget-ms 8 --dataset digits" }),
          ".",
        )
      : "";
  }

  async function loadDevices() {
    try {
      const devices = await api("/v1/devices");
      const items = Array.isArray(devices) ? devices : devices.items || [];
      if (!items.length) {
        const hint = el("p", { class: "muted" }, "No devices yet: ", el("code", { text: "hwnas device add NAME" }));
        replace(devicesBox, hint);
        return;
      }
      replace(
        devicesBox,
        el(
          "ul",
          { class: "device-list" },
          items.map((d) =>
            el(
              "li",
              {},
              deviceLink(d.name),
              el(
                "span",
                { class: "muted" },
                ` ${d.runtime || "onnxruntime"} ${d.runtime_version || ""} · ${d.threads ?? "?"} thread(s)` +
                  (d.lut_entries !== undefined ? ` · ${d.lut_entries} LUT entries` : ""),
              ),
            ),
          ),
        ),
      );
    } catch (error) {
      if (!(error instanceof NeedKey)) replace(devicesBox, errorBox(error));
    }
  }

  await refresh();
  loadDevices();
  // Poll every 2 s while the tab is visible (new searches appear, running ones move); the devices,
  // which change rarely, every 30 s.
  every(LIST_POLL_MS, () => {
    if (!document.hidden) refresh();
  });
  every(30000, () => {
    if (!document.hidden) loadDevices();
  });
}

// --- the accuracy-vs-latency scatter -----------------------------------------------------------------

function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const unit = raw / power;
  return (unit >= 5 ? 10 : unit >= 2 ? 5 : unit >= 1 ? 2 : 1) * power;
}

function ticks(lo, hi, count) {
  const step = niceStep(hi - lo, count);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return { values: out, step };
}

function tickLabel(v, step, suffix = "") {
  const digits = Math.max(0, -Math.floor(Math.log10(step)));
  return `${v.toFixed(Math.min(digits, 6))}${suffix}`;
}

/** The non-dominated points (lower latency, higher accuracy), by latency. */
function paretoOf(points) {
  const sorted = [...points].sort((a, b) => a.predicted_ms - b.predicted_ms || b.accuracy - a.accuracy);
  const front = [];
  let best = -Infinity;
  for (const p of sorted) {
    if (p.accuracy > best) {
      front.push(p);
      best = p.accuracy;
    }
  }
  return front;
}

function scatterPlot({ candidates, pareto, budgetMs }) {
  const W = 760;
  const H = 420;
  const m = { left: 62, right: 20, top: 18, bottom: 56 };
  const trained = candidates.filter((c) => c.accuracy !== null && c.accuracy !== undefined && c.predicted_ms != null);
  const untrained = candidates.filter((c) => c.accuracy == null && c.predicted_ms != null);

  const root = svg("svg", {
    id: "scatter",
    class: "scatter",
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    "aria-label": "accuracy against predicted latency of the candidates",
  });
  const latencies = [...candidates.map((c) => c.predicted_ms).filter((v) => v != null), budgetMs].filter(
    (v) => v !== undefined && v !== null && Number.isFinite(v),
  );
  if (!latencies.length) {
    root.append(svg("text", { x: W / 2, y: H / 2, class: "empty", "text-anchor": "middle" }, "no candidates yet"));
    return root;
  }
  let xLo = Math.min(...latencies);
  let xHi = Math.max(...latencies);
  const xPad = (xHi - xLo || xHi || 1) * 0.08;
  xLo = Math.max(0, xLo - xPad);
  xHi += xPad;
  const accs = trained.map((c) => c.accuracy);
  let yLo = accs.length ? Math.min(...accs) : 0;
  let yHi = accs.length ? Math.max(...accs) : 1;
  const yPad = Math.max((yHi - yLo) * 0.1, 0.02);
  yLo = Math.max(0, yLo - yPad);
  yHi = Math.min(1, yHi + yPad);
  if (yHi - yLo < 0.04) yLo = Math.max(0, yHi - 0.04);

  const plotW = W - m.left - m.right;
  const plotH = H - m.top - m.bottom;
  const x = (v) => m.left + ((v - xLo) / (xHi - xLo)) * plotW;
  const y = (v) => m.top + (1 - (v - yLo) / (yHi - yLo)) * plotH;

  // Grid and axes.
  const grid = svg("g", { class: "grid" });
  const xt = ticks(xLo, xHi, 7);
  for (const v of xt.values) {
    grid.append(svg("line", { x1: x(v), x2: x(v), y1: m.top, y2: m.top + plotH }));
    grid.append(
      svg("text", { x: x(v), y: m.top + plotH + 18, "text-anchor": "middle", class: "tick" }, tickLabel(v, xt.step)),
    );
  }
  const yt = ticks(yLo, yHi, 6);
  for (const v of yt.values) {
    grid.append(svg("line", { x1: m.left, x2: m.left + plotW, y1: y(v), y2: y(v) }));
    grid.append(
      svg(
        "text",
        { x: m.left - 8, y: y(v) + 4, "text-anchor": "end", class: "tick" },
        tickLabel(100 * v, 100 * yt.step, "%"),
      ),
    );
  }
  root.append(grid);
  root.append(svg("rect", { x: m.left, y: m.top, width: plotW, height: plotH, class: "frame" }));
  root.append(
    svg(
      "text",
      { x: m.left + plotW / 2, y: H - 14, "text-anchor": "middle", class: "axis-label" },
      "predicted latency (ms)",
    ),
  );
  root.append(
    svg(
      "text",
      {
        x: 16,
        y: m.top + plotH / 2,
        "text-anchor": "middle",
        class: "axis-label",
        transform: `rotate(-90 16 ${m.top + plotH / 2})`,
      },
      "validation accuracy",
    ),
  );

  // The latency budget.
  if (Number.isFinite(budgetMs)) {
    const bx = x(budgetMs);
    const labelLeft = bx > m.left + plotW * 0.7; // near the right edge: the label goes on the line's left
    root.append(svg("line", { x1: bx, x2: bx, y1: m.top, y2: m.top + plotH, class: "budget", id: "budget-line" }));
    root.append(
      svg(
        "text",
        {
          x: labelLeft ? bx - 5 : bx + 5,
          y: m.top + plotH - 12,
          "text-anchor": labelLeft ? "end" : "start",
          class: "budget-label",
        },
        `budget ${fmt.ms(budgetMs)}`,
      ),
    );
  }

  // The Pareto front, as the staircase of what is reachable.
  // The service's front of the candidates, joined by the final results plotted beside them.
  const extra = trained.filter((c) => c.final);
  const base = pareto && pareto.length ? pareto : trained.filter((c) => c.status === "completed" && !c.final);
  const front = paretoOf([...base, ...extra].filter((p) => p.accuracy != null && p.predicted_ms != null));
  if (front.length) {
    const pts = [];
    front.forEach((p, i) => {
      pts.push([x(p.predicted_ms), y(p.accuracy)]);
      const next = front[i + 1];
      if (next) pts.push([x(next.predicted_ms), y(p.accuracy)]);
    });
    pts.push([m.left + plotW, y(front[front.length - 1].accuracy)]);
    root.append(
      svg("polyline", {
        id: "pareto-line",
        class: "pareto",
        points: pts.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(" "),
      }),
    );
  }

  // Untrained candidates (over budget, failed): a rug under the plot.
  const rug = svg("g", { class: "rug" });
  for (const c of untrained) {
    const cx = x(c.predicted_ms);
    rug.append(
      svg(
        "line",
        { x1: cx, x2: cx, y1: m.top + plotH - 8, y2: m.top + plotH, stroke: PHASE_COLOURS[c.phase] || "#999" },
        svg("title", {}, `${c.status} (not trained) · ${fmt.ms(c.predicted_ms)} · ${c.arch_hash?.slice(0, 12)}`),
      ),
    );
  }
  root.append(rug);

  // Trained candidates, the winner and baseline ringed.
  const dots = svg("g", { class: "points" });
  const ordered = [...trained].sort((a, b) => PHASES.indexOf(a.phase) - PHASES.indexOf(b.phase));
  for (const c of ordered) {
    const cx = x(c.predicted_ms);
    const cy = y(c.accuracy);
    const role = c.role;
    // Supernet members scored with inherited weights: many, and cheaper evidence; drawn small and faint.
    const inherited = c.evaluation === "inherited" && !role;
    dots.append(
      svg(
        "circle",
        {
          cx: cx.toFixed(1),
          cy: cy.toFixed(1),
          r: role ? 6.5 : inherited ? 2.5 : 5,
          fill: PHASE_COLOURS[c.phase] || "#777",
          "fill-opacity": inherited ? 0.35 : 1,
          class: `point phase-${c.phase} status-${c.status}${inherited ? " inherited" : ""}`,
          dataset: { hash: c.arch_hash || "", phase: c.phase || "" },
        },
        svg(
          "title",
          {},
          `${c.role ? `${c.role} · ` : ""}${c.phase} · ${c.status}` +
            (inherited ? " · inherited weights (supernet)" : "") +
            `\naccuracy ${fmt.pct(c.accuracy)}\npredicted ${fmt.ms(c.predicted_ms)}` +
            `\nparams ${fmt.count(c.params)} · MAdds ${fmt.count(c.madds)}\n${c.arch_hash || ""}`,
        ),
      ),
    );
    if (role) {
      dots.append(svg("circle", { cx: cx.toFixed(1), cy: cy.toFixed(1), r: 11, class: `ring ring-${role}` }));
      dots.append(svg("text", { x: cx + 14, y: cy - 8, class: `ring-label ring-label-${role}` }, role));
    }
  }
  root.append(dots);
  if (!trained.length) {
    root.append(
      svg(
        "text",
        { x: m.left + plotW / 2, y: m.top + plotH / 2, "text-anchor": "middle", class: "empty" },
        untrained.length ? "no trained candidate yet" : "waiting for the first trial…",
      ),
    );
  }
  return root;
}

function legend(candidates) {
  const counts = {};
  for (const c of candidates) counts[c.phase] = (counts[c.phase] || 0) + 1;
  const untrained = candidates.filter((c) => c.accuracy === null || c.accuracy === undefined).length;
  const inherited = candidates.filter((c) => c.evaluation === "inherited").length;
  return el(
    "div",
    { class: "legend" },
    PHASES.filter((p) => counts[p]).map((p) => {
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = PHASE_COLOURS[p];
      return el("span", { class: "legend-item" }, swatch, `${p} (${counts[p]})`);
    }),
    el("span", { class: "legend-item" }, el("span", { class: "swatch-line pareto-swatch" }), "Pareto front"),
    el("span", { class: "legend-item" }, el("span", { class: "swatch-line budget-swatch" }), "budget"),
    untrained ? el("span", { class: "legend-item muted" }, `${untrained} not trained (ticks on the axis)`) : null,
    inherited
      ? el("span", { class: "legend-item muted" }, `${inherited} scored with supernet weights (small dots)`)
      : null,
  );
}

// --- page: one search --------------------------------------------------------------------------------

async function searchPage(searchId) {
  const base = `/v1/searches/${encodeURIComponent(searchId)}`;
  const state = {
    search: null,
    candidates: [],
    pareto: [],
    events: [],
    eventIds: new Set(),
    architectures: {},
    loadedArchitectures: new Set(),
    stream: "connecting",
  };

  const header = el("section", { class: "card", id: "search-header" });
  const plotBox = el("div", { id: "plot-box" });
  const legendBox = el("div", { id: "legend-box" });
  const plotNote = el("p", { class: "muted", id: "plot-note" });
  const cards = el("div", { class: "arch-cards", id: "arch-cards" });
  const log = el("ol", { class: "log", id: "event-log" });
  const streamBadge = el("span", { class: "stream-badge", id: "stream-state" });

  replace(
    app(),
    header,
    el(
      "div",
      { class: "grid-2" },
      el(
        "section",
        { class: "card plot-card" },
        el("div", { class: "card-head" }, el("h2", { text: "Accuracy vs predicted latency" })),
        plotBox,
        legendBox,
        plotNote,
      ),
      el(
        "section",
        { class: "card" },
        el("h2", { text: "Result" }),
        cards,
        el("div", { class: "card-head log-head" }, el("h2", { text: "Events" }), streamBadge),
        log,
      ),
    ),
  );
  replace(cards, el("p", { class: "muted", text: "The winner appears here when the search finishes." }));

  function renderHeader() {
    const s = state.search;
    if (!s) return;
    document.title = `${s.status} · ${fmt.short(s.id)} · hwnas`;
    const skipped = s.over_budget_skipped ?? 0;
    replace(
      header,
      el(
        "div",
        { class: "card-head" },
        el("h1", {}, "Search ", el("span", { class: "mono", title: s.id }, fmt.short(s.id))),
        el(
          "div",
          { class: "head-status" },
          statusPill(s.status),
          el("span", { class: "phase", id: "phase" }, phaseText(s.phase)),
        ),
      ),
      el("div", { id: "search-progress" }, progressBar(s.progress, s.status)),
      el(
        "p",
        { class: "muted", id: "trials-line" },
        `${s.trials_done ?? 0} of ${s.trials_total ?? "?"} trials` +
          (skipped ? ` · ${skipped} over-budget proposals never trained` : ""),
        el("span", { id: "elapsed" }, elapsedText(s)),
      ),
      s.error ? el("p", { class: "error", role: "alert" }, s.error) : null,
      definitionList([
        ["budget", fmt.ms(s.budget_ms)],
        ["device", deviceLink(s.device)],
        ["space", s.space || "–"],
        ["dataset", s.dataset || "–"],
        ["strategy", s.strategy || "–"],
        ["effort", s.effort ?? s.request?.effort ?? "–"],
        ["deployed at", s.resolution ? `${s.resolution} px` : "–"],
        ["trials train at", s.train_resolution ? `${s.train_resolution} px` : "–"],
        ["created", fmt.time(s.created_at)],
        ["finished", fmt.time(s.finished_at)],
      ]),
    );
  }

  function elapsedText(s) {
    if (!s.started_at) return s.status === "queued" ? " · waiting for a worker" : "";
    return ` · ${s.finished_at ? "took" : "running for"} ${fmt.duration(s.started_at, s.finished_at)}`;
  }


  function renderPlot() {
    const s = state.search;
    const points = state.candidates.map((c) => ({ ...c }));
    // The winner and the baseline as they were finally trained: ring the candidate that is exactly
    // that (same network, same accuracy), else add the final result as its own point. A winner
    // trained longer than its search trial shows both: where the search saw it, where it ended.
    for (const role of ["winner", "baseline"]) {
      const arch = state.architectures[role] || s?.result?.[role];
      if (!arch || arch.accuracy == null || arch.predicted_ms == null) continue;
      const same = points.find(
        (c) => c.arch_hash === arch.arch_hash && c.accuracy != null && Math.abs(c.accuracy - arch.accuracy) < 1e-9,
      );
      if (same) {
        same.role = role;
        continue;
      }
      points.push({
        role,
        final: true, // not a candidate row: the network as finally trained
        arch_hash: arch.arch_hash,
        phase: role === "winner" ? "final" : "baseline",
        status: "completed",
        accuracy: arch.accuracy,
        predicted_ms: arch.predicted_ms,
        params: arch.params,
        madds: arch.madds,
      });
    }
    const budgetMs = s?.budget_ms ?? s?.result?.budget_ms;
    replace(plotBox, scatterPlot({ candidates: points, pareto: state.pareto, budgetMs }));
    replace(legendBox, legend(points));
    const trained = points.filter((c) => c.accuracy != null).length;
    replace(plotNote, `${trained} trained point(s); hover one for its numbers.`);
  }

  /** How the winner compares with the baseline: accuracy points, and speed (measured when both are). */
  function comparison(winner, baseline) {
    const lines = [];
    // Test accuracy (held-out images nothing was selected on) when both have it, else validation.
    const onTest = winner.test_accuracy != null && baseline.test_accuracy != null;
    const [a, b] = onTest ? [winner.test_accuracy, baseline.test_accuracy] : [winner.accuracy, baseline.accuracy];
    if (a != null && b != null) {
      const gain = 100 * (a - b);
      const what = onTest ? "test accuracy" : "validation accuracy";
      const text =
        Math.abs(gain) < 0.05
          ? `same ${what} as the baseline`
          : `${gain > 0 ? "+" : ""}${gain.toFixed(1)} ${what} points vs the baseline`;
      lines.push(el("p", { class: gain < -0.05 ? "delta bad" : "delta good" }, text));
    }
    const measured = winner.measured_ms != null && baseline.measured_ms != null;
    const [mine, theirs] = measured
      ? [winner.measured_ms, baseline.measured_ms]
      : [winner.predicted_ms, baseline.predicted_ms];
    if (mine > 0 && theirs > 0) {
      const ratio = theirs / mine;
      const text =
        ratio >= 1
          ? `${ratio.toFixed(1)}× faster (${measured ? "measured" : "predicted"})`
          : `${(1 / ratio).toFixed(1)}× slower (${measured ? "measured" : "predicted"})`;
      lines.push(el("p", { class: "delta-sub muted" }, text));
    }
    return lines;
  }

  /** The device's own end-to-end measurement beside the budget: what the user ships against. */
  function measuredText(arch) {
    if (arch.measured_ms == null) return "not measured";
    const budget = state.search?.budget_ms;
    if (!(budget > 0)) return fmt.ms(arch.measured_ms);
    const within = arch.measured_ms <= budget;
    return `${fmt.ms(arch.measured_ms)} (${within ? "within" : "over"} the ${fmt.ms(budget)} budget)`;
  }

  function archCard(role, arch, other) {
    const rows = [
      ["test accuracy", arch.test_accuracy == null ? "no test split" : fmt.pct(arch.test_accuracy)],
      ["validation accuracy", fmt.pct(arch.accuracy)],
      ["predicted", fmt.ms(arch.predicted_ms)],
      ["measured on device", measuredText(arch)],
      ["params", fmt.count(arch.params)],
      ["MAdds", fmt.count(arch.madds)],
    ];
    const card = el(
      "article",
      { class: `arch-card arch-${role}`, id: `${role}-card`, dataset: { architectureId: arch.id || "" } },
      el(
        "h3",
        {},
        role === "winner" ? "Winner" : "Baseline",
        arch.name ? el("span", { class: "muted" }, ` ${arch.name}`) : null,
      ),
      definitionList(rows, "facts compact"),
    );
    if (role === "winner" && other) card.append(...comparison(arch, other));
    if (arch.id) {
      const links = [
        ["spec", "spec.json", "spec"],
        ["onnx", "model.onnx", "ONNX"],
        ["onnx-uint8", "model_uint8.onnx", "ONNX (raw uint8 images)"],
        ["weights", "weights.pt", "weights"],
      ].map(([kind, file, label]) =>
        el(
          "a",
          {
            href: `/v1/architectures/${encodeURIComponent(arch.id)}/${kind}`,
            class: "download",
            dataset: { kind, file: `${role}-${fmt.short(arch.id)}-${file}` },
            onclick: (event) => {
              event.preventDefault();
              download(event.currentTarget);
            },
          },
          `⬇ ${label}`,
        ),
      );
      card.append(el("div", { class: "downloads" }, links));
    }
    return card;
  }

  let shownCards = "";
  function renderCards() {
    const s = state.search;
    const summary = (role) => (s?.result?.[role] ? { ...s.result[role], id: architectureId(role) } : null);
    const winner = state.architectures.winner || summary("winner");
    const baseline = state.architectures.baseline || summary("baseline");
    if (!winner) {
      const text =
        s && FINISHED.has(s.status)
          ? s.status === "succeeded"
            ? "This search reported no winner."
            : `No winner: the search ${s.status}.`
          : "The winner appears here when the search finishes.";
      shownCards = "";
      replace(cards, el("p", { class: "muted", text }));
      return;
    }
    // Without a baseline, say why (the runner logs it as a `baseline` warning), once the search ended.
    const why = baseline ? null : noBaselineReason();
    const signature = JSON.stringify([winner, baseline, why]);
    if (signature === shownCards) return; // unchanged: keep the DOM (a download may be in progress)
    shownCards = signature;
    const other = baseline
      ? archCard("baseline", baseline, winner)
      : why
        ? el(
            "article",
            { class: "arch-card arch-baseline", id: "no-baseline" },
            el("h3", { text: "Baseline" }),
            el("p", { class: "muted" }, why),
          )
        : null;
    replace(cards, archCard("winner", winner, baseline), other);
  }

  function noBaselineReason() {
    const s = state.search;
    if (!s || !FINISHED.has(s.status)) return null;
    if (s.request && s.request.baseline === false) return "Not asked for (baseline: false).";
    const warning = [...state.events].reverse().find((e) => e.kind === "baseline" && e.level !== "info");
    return warning ? warning.message : null;
  }

  /** The id of the search's winner or baseline architecture (for its page and downloads), if any. */
  function architectureId(role) {
    const s = state.search || {};
    const entry = s.result?.[role];
    return s[`${role}_id`] ?? entry?.architecture_id ?? entry?.id ?? null;
  }

  async function loadArchitectures() {
    for (const role of ["winner", "baseline"]) {
      const id = architectureId(role);
      if (!id || state.loadedArchitectures.has(id)) continue;
      state.loadedArchitectures.add(id); // once per id, however many snapshots ask
      try {
        const arch = await api(`/v1/architectures/${encodeURIComponent(id)}`);
        state.architectures[role] = { ...state.search.result?.[role], ...arch, id: arch.id ?? id };
      } catch (error) {
        if (error instanceof NeedKey) return;
        state.loadedArchitectures.delete(id); // try again on the next snapshot
        continue;
      }
    }
    renderCards();
    renderPlot();
  }

  function addEvent({ id, event, data }) {
    const key = id ?? `${event}-${state.events.length}`;
    if (state.eventIds.has(key)) return false;
    state.eventIds.add(key);
    const body = data && typeof data === "object" ? data : { message: data };
    const entry = {
      id,
      kind: body.kind || event,
      level: body.level || "info",
      message: body.message ?? summariseEvent(event, body),
      at: body.created_at || body.time || body.at,
    };
    state.events.push(entry);
    if (state.events.length > LOG_TAIL) state.events.splice(0, state.events.length - LOG_TAIL);
    return true;
  }

  function summariseEvent(event, body) {
    return Object.entries(body)
      .filter(([, v]) => typeof v !== "object")
      .map(([k, v]) => `${k} ${v}`)
      .join(" · ");
  }

  function renderLog() {
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
    replace(
      log,
      state.events.map((e) =>
        el(
          "li",
          { class: `level-${e.level}`, dataset: { kind: e.kind } },
          el("span", { class: "log-time" }, fmt.clock(e.at)),
          el("span", { class: "log-kind" }, e.kind),
          el("span", { class: "log-message" }, e.message),
        ),
      ),
    );
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function renderStream() {
    const labels = { live: "live", reconnecting: "reconnecting…", ended: "finished", connecting: "connecting…" };
    replace(streamBadge, labels[state.stream] || state.stream);
    streamBadge.dataset.state = state.stream;
  }

  // Answers can arrive out of order (a slow GET after a newer SSE snapshot): each read takes a ticket
  // when it starts, and an answer older than what is already shown is dropped. Every refresh after
  // the stream's `end` starts later than anything before it, so the page always settles on the end.
  let ticket = 0;
  let shownSearch = 0;
  let shownCandidates = 0;

  async function loadSearch() {
    const mine = ++ticket;
    const search = await api(base);
    applySnapshot(search, mine);
  }

  function applySnapshot(snapshot, mine = ++ticket) {
    if (!snapshot || typeof snapshot !== "object" || mine < shownSearch) return;
    shownSearch = mine;
    state.search = { ...(state.search || {}), ...snapshot };
    renderHeader();
    if (state.search.result?.winner || state.search.winner_id) {
      renderCards();
      loadArchitectures();
    }
  }

  async function loadCandidates() {
    const mine = ++ticket;
    const all = [];
    const limit = 200;
    for (let offset = 0; ; offset += limit) {
      const page = await api(`${base}/candidates${query({ limit, offset })}`);
      const items = page.items || [];
      all.push(...items);
      if (items.length < limit || all.length >= (page.total ?? all.length) || all.length >= 5000) break;
    }
    let pareto = [];
    try {
      const answer = await api(`${base}/pareto`);
      pareto = Array.isArray(answer) ? answer : answer.items || [];
    } catch (error) {
      if (error instanceof NeedKey) throw error;
    }
    if (mine < shownCandidates) return;
    shownCandidates = mine;
    state.candidates = all;
    state.pareto = pareto;
    renderPlot();
  }

  // Refreshes triggered by events, coalesced so a burst of trials costs one round of requests.
  let pending = null;
  function scheduleRefresh(delayMs = 300) {
    if (pending) return;
    pending = setTimeout(async () => {
      pending = null;
      try {
        await Promise.all([loadSearch(), loadCandidates()]);
      } catch (error) {
        if (!(error instanceof NeedKey)) replace(plotNote, errorBox(error));
      }
    }, delayMs);
  }

  try {
    await loadSearch();
  } catch (error) {
    if (error instanceof NeedKey) return;
    const back = el("p", {}, el("a", { href: "/", text: "← all searches" }));
    replace(header, el("h1", { text: "Search" }), errorBox(error), back);
    return;
  }
  loadCandidates().catch((error) => {
    if (!(error instanceof NeedKey)) replace(plotNote, errorBox(error));
  });
  renderStream();

  const controller = new AbortController();
  running.controllers.add(controller);
  let renderQueued = false;
  const renderLogSoon = () => {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      renderLog();
    });
  };
  const onEvent = (message) => {
    if (message.event === "progress") {
      applySnapshot(message.data && message.data.search ? message.data.search : message.data);
      return;
    }
    if (message.event === "end") {
      if (message.data && typeof message.data === "object" && message.data.status) applySnapshot(message.data);
      scheduleRefresh(0);
      return;
    }
    if (addEvent(message)) renderLogSoon();
    if (message.event !== "heartbeat") scheduleRefresh();
  };
  const onState = (stream, detail) => {
    state.stream = stream;
    renderStream();
    if (stream === "failed") {
      replace(streamBadge, `events unavailable: ${detail}`);
      startPolling();
    }
  };
  let polling = false;
  function startPolling() {
    if (polling) return;
    polling = true;
    every(LIST_POLL_MS, () => {
      if (!FINISHED.has(state.search?.status)) scheduleRefresh(0);
    });
  }
  // A slow safety net: if the stream is quiet (no change for a while) the snapshot is still re-read.
  every(5000, () => {
    if (!FINISHED.has(state.search?.status) && state.stream !== "live") scheduleRefresh(0);
  });
  every(1000, () => {
    const elapsed = document.getElementById("elapsed");
    if (elapsed && state.search && !FINISHED.has(state.search.status)) elapsed.textContent = elapsedText(state.search);
  });
  streamEvents(`${base}/events`, { signal: controller.signal, onEvent, onState });
}

// --- downloads: fetch with the key, hand the browser a blob --------------------------------------------

async function download(link) {
  const original = link.textContent;
  link.classList.add("busy");
  link.textContent = `${original} …`;
  try {
    const response = await apiFetch(link.getAttribute("href"));
    const blob = await response.blob();
    const disposition = response.headers.get("Content-Disposition") || "";
    const named = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition);
    const name = named ? decodeURIComponent(named[1]) : link.dataset.file;
    const url = URL.createObjectURL(blob);
    const anchor = el("a", { href: url, download: name, class: "hidden" });
    document.body.append(anchor);
    anchor.click();
    anchor.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    link.dataset.bytes = String(blob.size);
    link.textContent = original;
  } catch (error) {
    if (error instanceof NeedKey) return;
    link.textContent = original;
    link.after(el("span", { class: "error small" }, ` ${error.message}`));
  } finally {
    link.classList.remove("busy");
  }
}

// --- page: one device --------------------------------------------------------------------------------

async function devicePage(name) {
  const base = `/v1/devices/${encodeURIComponent(name)}`;
  const header = el("section", { class: "card", id: "device-header" }, el("h1", {}, "Device ", name));
  const coverageBox = el("div", { id: "coverage" });
  const accuracyBox = el("div", { id: "accuracy" });
  const spaceSelect = el("select", { id: "space", name: "space" });
  const number = (id, min, max, step, placeholder) =>
    el("input", { id, name: id, type: "number", min, max, step, placeholder });
  const resolution = number("resolution", 16, 320, 1, "all");
  const width = number("width", 0.1, 2, 0.05, "all");
  const form = el(
    "form",
    {
      class: "row wrap",
      onsubmit: (event) => {
        event.preventDefault();
        showCoverage();
        showAccuracy();
      },
    },
    el("label", { class: "inline" }, "space ", spaceSelect),
    el("label", { class: "inline" }, "resolution ", resolution),
    el("label", { class: "inline" }, "width ", width),
    el("button", { type: "submit", text: "Show" }),
  );
  replace(
    app(),
    header,
    el(
      "div",
      { class: "grid-2 even" },
      el("section", { class: "card" }, el("h2", { text: "LUT coverage" }), form, coverageBox),
      el("section", { class: "card" }, el("h2", { text: "Predictor accuracy" }), accuracyBox),
    ),
  );

  let device;
  try {
    device = await api(base);
  } catch (error) {
    if (!(error instanceof NeedKey)) header.append(errorBox(error));
    return;
  }
  const shown = new Set(["name", "coverage"]);
  const extra = Object.entries(device).filter(([k, v]) => !shown.has(k) && (typeof v !== "object" || v === null));
  const facts = device.facts && typeof device.facts === "object" ? Object.entries(device.facts) : [];
  header.append(
    definitionList([
      ...extra.map(([k, v]) => [k.replaceAll("_", " "), k.endsWith("_at") ? fmt.time(v) : String(v ?? "–")]),
      ...facts.map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : String(v)]),
    ]),
  );
  // What the device's measurements ran on (GET /v1/devices/{name} -> environments), most used first.
  const environments = Array.isArray(device.environments) ? device.environments : [];
  if (environments.length) {
    header.append(
      el("h2", { text: "Measured on" }),
      ...environments.map((item) =>
        definitionList([
          ["entries", `${item.lut_entries} LUT, ${item.e2e_measurements} end-to-end`],
          ...Object.entries(item.environment || { environment: "not recorded" }).map(([k, v]) => [
            k.replaceAll("_", " "),
            String(v),
          ]),
        ]),
      ),
    );
  }

  try {
    const spaces = await api("/v1/spaces");
    const list = Array.isArray(spaces) ? spaces : spaces.items || [];
    replace(spaceSelect, list.map((s) => el("option", { value: s.name, text: s.name })));
  } catch (error) {
    if (error instanceof NeedKey) return;
    coverageBox.append(errorBox(error));
  }
  const params = new URLSearchParams(location.search);
  if (params.get("space")) spaceSelect.value = params.get("space");
  if (params.get("resolution")) resolution.value = params.get("resolution");
  if (params.get("width")) width.value = params.get("width");

  const filters = () => ({ space: spaceSelect.value, resolution: resolution.value, width: width.value });

  async function showCoverage() {
    replace(coverageBox, el("p", { class: "muted", text: "Counting keys…" }));
    const q = filters();
    history.replaceState(null, "", `${location.pathname}${query(q)}`);
    try {
      const answer = await api(`${base}${query(q)}`);
      const cov = answer.coverage || {};
      const total = numberOf(cov.keys);
      const missing = numberOf(cov.missing) ?? 0;
      const fraction = typeof cov.coverage === "number" ? cov.coverage : total ? (total - missing) / total : null;
      const narrowed = [
        cov.resolutions?.length ? `${cov.resolutions.join(", ")} px` : null,
        cov.widths?.length ? `width ${cov.widths.join(", ")}` : null,
      ].filter(Boolean);
      replace(
        coverageBox,
        el("div", { id: "coverage-bar" }, progressBar(fraction ?? 0, fraction === 1 ? "succeeded" : "running")),
        el(
          "p",
          { id: "coverage-line" },
          total !== null
            ? `${total - missing} of ${total} block keys of ${cov.space || q.space} measured (${fmt.pct(fraction)})`
            : `coverage ${fmt.pct(fraction)}`,
          narrowed.length ? ` at ${narrowed.join(", ")}.` : ".",
        ),
        missing
          ? el(
              "p",
              {},
              `${missing} key(s) missing: profile them with `,
              el("code", { text: `hwnas lut profile ${name} --space ${q.space}` }),
              " on the device, or with a profiling kit.",
            )
          : el("p", { class: "good" }, "Every key of this space is in the table: searches can price any candidate."),
      );
      if (missing) {
        const examples = await api(`${base}/lut/missing${query({ ...q, limit: 12 })}`);
        const keys = examples.keys || [];
        if (keys.length) {
          coverageBox.append(
            el("p", { class: "muted small" }, `first ${keys.length} missing:`),
            el("ul", { class: "mono small key-list" }, keys.map((k) => el("li", {}, String(k)))),
          );
        }
      }
    } catch (error) {
      if (!(error instanceof NeedKey)) replace(coverageBox, errorBox(error));
    }
  }

  async function showAccuracy() {
    replace(accuracyBox, el("p", { class: "muted", text: "Loading the report…" }));
    try {
      const report = await api(`${base}/accuracy${query(filters())}`);
      replace(accuracyBox, accuracyTable(report));
    } catch (error) {
      if (error instanceof NeedKey) return;
      if (error instanceof ApiError && error.status === 409) {
        replace(accuracyBox, el("p", { class: "notice", id: "accuracy-409" }, error.message));
      } else {
        replace(accuracyBox, errorBox(error));
      }
    }
  }

  if (spaceSelect.value) {
    showCoverage();
    showAccuracy();
  }
}

function numberOf(v) {
  if (Array.isArray(v)) return v.length;
  const n = Number(v);
  return v === undefined || v === null || Number.isNaN(n) ? null : n;
}

function accuracyTable(report) {
  const raw = report.scores || report.report?.scores || {};
  const scores = Array.isArray(raw) ? raw : Object.entries(raw).map(([name, s]) => ({ name, ...s }));
  const names = { calibrated: "calibrated predictor", lut_sum: "raw LUT sum", madds_linear: "MAdds linear model" };
  const pctOrFrac = (v) => (v === null || v === undefined ? "–" : v <= 1 ? fmt.pct(v, 0) : `${v.toFixed(0)}%`);
  return el(
    "div",
    {},
    el(
      "p",
      { class: "muted" },
      `Fitted on ${report.n_calibration ?? "?"} network(s) measured end to end, ` +
        `scored on ${report.n_evaluation ?? "?"} others.`,
    ),
    el(
      "table",
      { class: "table", id: "accuracy-table" },
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          ["predictor", "n", "within ±5%", "within ±10%", "MAPE", "Spearman"].map((h) => el("th", { text: h })),
        ),
      ),
      el(
        "tbody",
        {},
        scores.map((s) =>
          el(
            "tr",
            {},
            el("td", {}, names[s.name] || s.name),
            el("td", { class: "num" }, String(s.n ?? "–")),
            el("td", { class: "num" }, pctOrFrac(s.within_5pct)),
            el("td", { class: "num" }, pctOrFrac(s.within_10pct)),
            el("td", { class: "num" }, s.mean_abs_pct_error == null ? "–" : `${s.mean_abs_pct_error.toFixed(1)}%`),
            el("td", { class: "num" }, s.spearman == null ? "–" : fmt.num(s.spearman, 2)),
          ),
        ),
      ),
    ),
  );
}

// --- start -------------------------------------------------------------------------------------------

async function main() {
  takeKeyFromFragment();
  renderKeyStatus();
  if (!getKey()) {
    showKeyForm();
    return;
  }
  const { page, arg } = document.body.dataset;
  try {
    if (page === "search") await searchPage(arg);
    else if (page === "device") await devicePage(arg);
    else await searchesPage();
  } catch (error) {
    if (!(error instanceof NeedKey)) replace(app(), errorBox(error));
  }
}

window.addEventListener("hashchange", () => {
  if (/(^#|&)key=/.test(location.hash)) location.reload();
});

main();
