// The dashboard: one stream (GET /api/events) keeps a map of every sandbox; the table renders only the
// rows in view, so 10,000 sandboxes stay usable. Plain JavaScript, served as is.
'use strict';

// What the page counts: the API's statuses, with Pending sandboxes that wait for someone to act
// (CrashLoopBackOff, ImagePullBackOff, Unschedulable...) apart as Stuck (the row's `state`).
const STATES = ['Pending', 'Stuck', 'Running', 'Succeeded', 'Failed', 'Unknown', 'Terminating'];
const ROW_HEIGHT = 32;
const KEY = 'sandbox-provisioner-key';

const $ = (id) => document.getElementById(id);
const state = {
  rows: new Map(), // sandbox_id -> row
  samples: [],
  durations: [],
  visible: [], // ids matching the search and filter, oldest first
  selected: undefined,
  key: sessionStorage.getItem(KEY) ?? '',
  abort: undefined,
  locked: false, // the provisioner asked for a key this page does not have (yet)
};

// ---- formatting ----

const color = (status) => `var(--${status})`;
function duration(ms) {
  if (!Number.isFinite(ms)) return '—';
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}
const since = (iso) => (iso ? Date.now() - Date.parse(iso) : NaN);
const until = (iso) => (iso ? Date.parse(iso) - Date.now() : NaN);
function text(tag, value, className) {
  const el = document.createElement(tag);
  el.textContent = value ?? '';
  if (className) el.className = className;
  return el;
}
/** A table cell: its full text on hover, as cells are cut to their column. */
function cell(value, className) {
  const el = text('span', value, className);
  el.title = value ?? '';
  return el;
}
function badge(row) {
  const span = document.createElement('span');
  span.append(text('span', row.status, 'badge'));
  span.firstChild.style.background = color(row.state);
  if (row.reason) span.append(text('span', row.reason, 'reason'));
  span.title = [row.status, row.reason, row.message].filter(Boolean).join(' — ');
  return span;
}

// ---- the table: search, filter, and only the visible rows in the DOM ----

function matches(row, query, status) {
  if (status && row.state !== status) return false;
  if (!query) return true;
  return [row.sandbox_id, row.thread_id, row.user_id].some((v) => v && v.toLowerCase().includes(query));
}

function refilter() {
  const query = $('search').value.trim().toLowerCase();
  const status = $('status').value;
  state.visible = [...state.rows.values()]
    .filter((r) => matches(r, query, status))
    .sort((a, b) => (a.created_at ?? '').localeCompare(b.created_at ?? '') || a.sandbox_id.localeCompare(b.sandbox_id))
    .map((r) => r.sandbox_id);
  $('spacer').style.height = `${state.visible.length * ROW_HEIGHT}px`;
  $('shown').textContent = `${state.visible.length} of ${state.rows.size}`;
  render();
}

let frame = 0;
/** Re-renders at the next frame (many changes in one frame cost one render). */
function schedule(filter) {
  if (filter) schedule.filter = true;
  if (frame) return;
  frame = requestAnimationFrame(() => {
    frame = 0;
    if (schedule.filter) {
      schedule.filter = false;
      refilter();
    } else render();
    renderCounts();
  });
}

function render() {
  const viewport = $('viewport');
  const first = Math.max(0, Math.floor(viewport.scrollTop / ROW_HEIGHT) - 5);
  const last = Math.min(state.visible.length, Math.ceil((viewport.scrollTop + viewport.clientHeight) / ROW_HEIGHT) + 5);
  for (const el of [...viewport.querySelectorAll('.row')]) el.remove();
  const fragment = document.createDocumentFragment();
  for (let i = first; i < last; i++) {
    const row = state.rows.get(state.visible[i]);
    if (!row) continue;
    const el = document.createElement('div');
    el.className = `row${row.sandbox_id === state.selected ? ' selected' : ''}`;
    el.setAttribute('role', 'row');
    el.dataset.id = row.sandbox_id;
    el.style.top = `${i * ROW_HEIGHT}px`;
    el.append(
      cell(row.sandbox_id),
      cell(row.thread_id ?? '—'),
      cell(row.user_id ?? '—'),
      badge(row),
      cell(duration(since(row.created_at))),
      cell(duration(since(row.last_activity_at))),
      cell(row.expires_at ? duration(until(row.expires_at)) : '—'),
      cell(row.sandbox_url, 'url'),
    );
    for (const cell of el.children) cell.setAttribute('role', 'cell');
    fragment.append(el);
  }
  viewport.append(fragment);
  if (state.selected) renderDetails();
}

function renderCounts() {
  const list = $('counts');
  // Locked, the page knows nothing: it says so rather than show zeros as if there were no sandboxes.
  if (state.locked) return list.replaceChildren(text('li', 'locked: enter the API key to see the sandboxes', 'locked'));
  const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
  for (const row of state.rows.values()) counts[row.state] += 1;
  list.replaceChildren(
    ...STATES.map((s) => {
      const li = text('li', s);
      li.style.color = color(s);
      li.append(text('b', String(counts[s])));
      return li;
    }),
  );
  drawHistory(counts);
}

// ---- details and actions ----

function renderDetails() {
  const row = state.rows.get(state.selected);
  const panel = $('details');
  if (!row) {
    panel.hidden = true;
    return;
  }
  panel.hidden = false;
  $('d-id').textContent = row.sandbox_id;
  $('d-status').replaceChildren(badge(row));
  $('d-message').textContent = row.message ?? '—';
  $('d-owner').textContent = `${row.thread_id ?? '—'} / ${row.user_id ?? '—'}`;
  $('d-created').textContent = row.created_at
    ? `${new Date(row.created_at).toLocaleString()} (${duration(since(row.created_at))} ago)`
    : '—';
  $('d-ready').textContent = row.create_to_running_s === undefined ? '—' : `${row.create_to_running_s} s`;
  renderTimings(row);
  $('d-expires').textContent = row.expires_at ? `in ${duration(until(row.expires_at))}` : 'never';
  $('d-url').textContent = row.sandbox_url;
  $('d-transitions').replaceChildren(
    ...[...row.transitions].reverse().map((t) => {
      const li = text('li', `${new Date(t.at).toLocaleTimeString()} — ${t.status}`);
      if (t.reason) li.append(text('span', t.reason, 'reason'));
      return li;
    }),
  );
}

/** The startup milestones, seconds from creation: where a slow start spent its time (image, app, probes). */
const MILESTONES = [
  ['scheduled_s', 'scheduled'],
  ['image_ready_s', 'image ready'],
  ['started_s', 'container started'],
  ['ready_s', 'Ready'],
];
function renderTimings(row) {
  const timings = row.timings ?? {};
  const total = Math.max(1, ...MILESTONES.map(([k]) => timings[k] ?? 0));
  $('d-timings').replaceChildren(
    ...MILESTONES.map(([k, label]) => {
      const li = text('li', '');
      const bar = text('span', '', 'bar');
      bar.style.width = timings[k] === undefined ? '0' : `${Math.max(2, (100 * timings[k]) / total)}%`;
      li.append(text('span', label, 'label'), bar, text('span', timings[k] === undefined ? '—' : `${timings[k]} s`, 'value'));
      return li;
    }),
  );
}

/** How many nodes sandboxes may run on lack the sandbox image (each first sandbox there waits for a pull). */
function renderNodes(nodes) {
  const el = $('nodes');
  el.hidden = !nodes;
  if (!nodes) return;
  el.textContent =
    nodes.lacking.length === 0
      ? `image on all ${nodes.eligible} nodes`
      : `image missing on ${nodes.lacking.length} of ${nodes.eligible} nodes`;
  el.title = nodes.lacking.join(', ');
  el.className = `nodes ${nodes.lacking.length ? 'lacking' : ''}`;
}

function headers(extra = {}) {
  return state.key ? { ...extra, 'x-api-key': state.key } : extra;
}

async function act(kind) {
  const id = state.selected;
  if (!id) return;
  const question =
    kind === 'delete' ? `Delete sandbox ${id}? Its pod and service are removed.` : `Keep sandbox ${id} alive (record activity now)?`;
  if (!confirm(question)) return;
  const res =
    kind === 'delete'
      ? await fetch(`/api/sandboxes/${encodeURIComponent(id)}`, { method: 'DELETE', headers: headers() })
      : await fetch(`/api/sandboxes/${encodeURIComponent(id)}/keepalive`, { method: 'POST', headers: headers() });
  const body = await res.json().catch(() => ({}));
  $('d-result').textContent = res.ok ? (kind === 'delete' ? 'Deleting…' : 'Kept alive.') : `Failed: ${body.detail ?? res.status}`;
}

/** The selected sandbox's last log lines (GET /api/sandboxes/{id}/logs): what anyone asks first of a crash loop. */
async function loadLogs() {
  const id = state.selected;
  if (!id) return;
  const el = $('d-logs');
  el.textContent = 'loading…';
  const res = await fetch(`/api/sandboxes/${encodeURIComponent(id)}/logs?tail_lines=200`, { headers: headers() }).catch(() => undefined);
  if (state.selected !== id) return;
  if (!res) return void (el.textContent = 'the provisioner did not answer');
  if (!res.ok) return void (el.textContent = (await res.json().catch(() => ({}))).detail ?? `error ${res.status}`);
  el.textContent = (await res.text()) || '(empty)';
  el.scrollTop = el.scrollHeight;
}

// ---- charts (canvas, no library) ----

function drawHistory(now) {
  const canvas = $('history');
  const ctx = canvas.getContext('2d');
  const hour = 3600_000;
  const points = [...state.samples.map((s) => ({ at: Date.parse(s.at), counts: s.counts })), { at: Date.now(), counts: now }];
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const max = Math.max(1, ...points.flatMap((p) => STATES.map((s) => p.counts[s])));
  const pad = 24;
  // Placed by time: the right edge is now, the left edge an hour ago.
  const x = (at) => pad + (canvas.width - 2 * pad) * Math.max(0, 1 - (Date.now() - at) / hour);
  const y = (v) => canvas.height - pad - ((canvas.height - 2 * pad) * v) / max;
  ctx.strokeStyle = '#e3e6ea';
  ctx.beginPath();
  ctx.moveTo(pad, y(0));
  ctx.lineTo(canvas.width - pad, y(0));
  ctx.stroke();
  ctx.fillStyle = '#6b7280';
  ctx.font = '11px system-ui';
  ctx.fillText(String(max), 2, y(max) + 4);
  ctx.fillText('0', 2, y(0) + 4);
  ctx.fillText('-1h', pad, canvas.height - 6);
  ctx.fillText('now', canvas.width - pad - 18, canvas.height - 6);
  // One line per status, and its latest value as a dot (a single sample, after a restart, is a dot);
  // the legend's labels side by side, each as wide as its text, on a second line when they overflow.
  let [legendX, legendY] = [pad + 10, 12];
  STATES.forEach((status) => {
    ctx.strokeStyle = ctx.fillStyle = statusColor(status);
    ctx.lineWidth = 2;
    ctx.beginPath();
    points.forEach((p, i) => (i ? ctx.lineTo(x(p.at), y(p.counts[status])) : ctx.moveTo(x(p.at), y(p.counts[status]))));
    ctx.stroke();
    ctx.beginPath();
    ctx.arc(x(Date.now()), y(now[status]), 3, 0, 2 * Math.PI);
    ctx.fill();
    const label = `${status} ${now[status]}`;
    const width = ctx.measureText(label).width;
    if (legendX + width > canvas.width - 4) [legendX, legendY] = [pad + 10, legendY + 13];
    ctx.fillText(label, legendX, legendY);
    legendX += width + 14;
  });
}

const statusColor = (status) => getComputedStyle(document.documentElement).getPropertyValue(`--${status}`);

const BUCKETS = [1, 2, 5, 10, 30, 60, Infinity];
function drawDurations() {
  const canvas = $('durations');
  const ctx = canvas.getContext('2d');
  const counts = BUCKETS.map(() => 0);
  for (const d of state.durations) counts[BUCKETS.findIndex((b) => d.seconds <= b)] += 1;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const max = Math.max(1, ...counts);
  const width = (canvas.width - 20) / BUCKETS.length;
  ctx.font = '11px system-ui';
  if (state.durations.length === 0) {
    ctx.fillStyle = '#6b7280';
    ctx.fillText('No sandbox has turned Running since the provisioner started.', 10, canvas.height / 2);
  }
  counts.forEach((n, i) => {
    const h = ((canvas.height - 40) * n) / max;
    ctx.fillStyle = statusColor('Running');
    ctx.fillRect(10 + i * width + 4, canvas.height - 22 - h, width - 8, h);
    ctx.fillStyle = '#6b7280';
    ctx.fillText(BUCKETS[i] === Infinity ? '>60' : `≤${BUCKETS[i]}`, 10 + i * width + 6, canvas.height - 8);
    if (n) ctx.fillText(String(n), 10 + i * width + 6, canvas.height - 26 - h);
  });
}

// ---- the stream ----

function handle(event, data) {
  switch (event) {
    case 'snapshot':
      state.rows = new Map(data.sandboxes.map((r) => [r.sandbox_id, r]));
      state.samples = data.samples;
      state.durations = data.durations;
      renderNodes(data.nodes);
      drawDurations();
      return schedule(true);
    case 'change': {
      const known = state.rows.has(data.sandbox_id);
      const ready = data.create_to_running_s !== undefined && state.rows.get(data.sandbox_id)?.create_to_running_s === undefined;
      state.rows.set(data.sandbox_id, data);
      if (ready) {
        state.durations.push({ at: new Date().toISOString(), seconds: data.create_to_running_s });
        drawDurations();
      }
      // A new sandbox, or one whose status changed, may enter or leave the filter.
      return schedule(!known || $('status').value !== '' || $('search').value !== '');
    }
    case 'removed':
      state.rows.delete(data.sandbox_id);
      return schedule(true);
    case 'end':
      // The service ended the stream (shutting down): the reconnect below finds another replica or waits.
      state.ended = data.reason;
      return;
    case 'sample':
      state.samples.push(data.sample);
      renderNodes(data.nodes);
      if (state.samples.length > 120) state.samples.shift();
      for (const [id, at] of Object.entries(data.activity)) {
        const row = state.rows.get(id);
        if (row) row.last_activity_at = at;
      }
      return schedule(false);
  }
}

function setConnection(text, className) {
  $('connection').textContent = text;
  $('connection').className = `connection ${className}`;
}

async function connect() {
  state.abort?.abort();
  const abort = new AbortController();
  state.abort = abort;
  let res;
  try {
    res = await fetch('/api/events', { headers: headers({ accept: 'text/event-stream' }), signal: abort.signal });
  } catch {
    setConnection('disconnected, retrying…', 'down');
    return void setTimeout(connect, 2000);
  }
  if (res.status === 401) return showLogin(state.key ? 'That key was refused.' : '');
  if (!res.ok || !res.body) {
    setConnection(`error ${res.status}, retrying…`, 'down');
    return void setTimeout(connect, 2000);
  }
  state.locked = false;
  $('login').hidden = true;
  $('main').hidden = false;
  setConnection('live', 'live');
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event && data) handle(event, JSON.parse(data));
      }
    }
  } catch {
    // reconnect below
  }
  if (abort.signal.aborted) return;
  setConnection(state.ended ? `${state.ended}, reconnecting…` : 'disconnected, retrying…', 'down');
  state.ended = undefined;
  setTimeout(connect, 2000);
}

function showLogin(message) {
  state.rows.clear();
  state.locked = true;
  renderCounts();
  $('main').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message;
  setConnection('API key needed', 'down');
  $('key').focus();
}

// ---- wiring ----

document.addEventListener('DOMContentLoaded', () => {
  for (const s of STATES) $('status').append(new Option(s, s));
  $('search').addEventListener('input', () => schedule(true));
  $('status').addEventListener('change', () => schedule(true));
  $('viewport').addEventListener('scroll', () => schedule(false));
  $('viewport').addEventListener('click', (e) => {
    const row = e.target.closest('.row');
    if (!row) return;
    state.selected = row.dataset.id;
    $('d-result').textContent = '';
    schedule(false);
    void loadLogs();
  });
  $('delete').addEventListener('click', () => void act('delete'));
  $('keepalive').addEventListener('click', () => void act('keepalive'));
  $('logs-refresh').addEventListener('click', () => void loadLogs());
  void fetch('/health')
    .then((r) => r.json())
    .then((h) => ($('version').textContent = `v${h.version}`))
    .catch(() => undefined);
  $('login').addEventListener('submit', (e) => {
    e.preventDefault();
    state.key = $('key').value;
    sessionStorage.setItem(KEY, state.key);
    $('key').value = '';
    void connect();
  });
  // Ages, idle times and expiries move with the clock.
  setInterval(() => schedule(false), 1000);
  void connect();
});
