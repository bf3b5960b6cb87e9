// llm-relay dashboard: plain JavaScript, no build step, no dependency. Every data call goes to
// /admin/ui/* or /admin/* with the admin key (kept in this tab's sessionStorage) as an
// Authorization header; no cookie is ever set. Pages poll every few seconds while shown.
'use strict';

const KEY = 'llm-relay-admin-key';
const POLL_MS = 5000;
let current = null;
let timer = null;
let windowDay = false;
const state = { selected: new Set(), armed: null };

// ---- small helpers -----------------------------------------------------------------------
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined) continue;
    e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return e;
}
const $ = (id) => document.getElementById(id);
// replaceChildren, taking nested arrays and skipping null (a part not shown)
function put(node, ...kids) {
  node.replaceChildren(...kids.flat(3).filter((k) => k !== null && k !== undefined && k !== false));
}
const num = (n) => (n === null || n === undefined) ? '–' : Number(n).toLocaleString('en-US');
const usd = (n) => (n === null || n === undefined) ? '–' : '$' + Number(n).toFixed(n >= 100 ? 2 : 4);
const ms = (n) => (n === null || n === undefined) ? '–' : (n >= 1000 ? (n / 1000).toFixed(2) + ' s' : n.toFixed(1) + ' ms');
const pct = (n) => (n === null || n === undefined) ? '–' : (n * 100).toFixed(1) + ' %';
const time = (s) => s ? new Date(s * 1000).toISOString().replace('T', ' ').slice(0, 19) : '–';
// every prompt token (cache reads and writes included) plus the answer's (reasoning included)
const tokens = (u) => u ? (Number(u.prompt_tokens) || 0) + (Number(u.completion_tokens) || 0) : 0;
function status(msg, bad) { const s = $('status'); s.textContent = msg || ''; s.className = bad ? 'error' : 'muted'; }
function pretty(v) { return typeof v === 'string' ? v : JSON.stringify(v, null, 2); }

class AuthError extends Error {}

async function api(path, opts) {
  opts = opts || {};
  const key = sessionStorage.getItem(KEY);
  if (!key) throw new AuthError('not signed in');
  const headers = { 'Authorization': 'Bearer ' + key };
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, {
    method: opts.method || 'GET', headers, credentials: 'omit', cache: 'no-store',
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  if (r.status === 401) throw new AuthError('the admin key was refused');
  if (opts.raw) return r;
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (!r.ok) {
    const m = data && data.error ? data.error.message : ('HTTP ' + r.status);
    throw new Error(m);
  }
  return data;
}

function fail(e) {
  if (e instanceof AuthError) { logout(e.message === 'not signed in' ? '' : 'The admin key was refused; sign in again.'); return; }
  status(e.message || String(e), true);
}

// ---- charts: hand-drawn SVG -----------------------------------------------------------------
function chart(title, points, series, fmt) {
  const W = 320, H = 120, P = 22;
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('class', 'chart');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', title);
  let max = 0;
  for (const s of series) for (const p of points) max = Math.max(max, Number(p[s.key]) || 0);
  if (max === 0) max = 1;
  const mk = (n, a) => { const e = document.createElementNS(svg.namespaceURI, n); for (const k in a) e.setAttribute(k, a[k]); return e; };
  svg.append(mk('line', { x1: P, y1: H - P, x2: W - 4, y2: H - P, class: 'axis' }));
  svg.append(mk('line', { x1: P, y1: 6, x2: P, y2: H - P, class: 'axis' }));
  const t = mk('text', { x: P + 2, y: 12 }); t.textContent = fmt(max); svg.append(t);
  const n = Math.max(points.length - 1, 1);
  series.forEach((s, i) => {
    const d = points.map((p, j) => {
      const x = P + (W - P - 4) * j / n;
      const y = H - P - (H - P - 8) * ((Number(p[s.key]) || 0) / max);
      return (j ? 'L' : 'M') + x.toFixed(1) + ' ' + y.toFixed(1);
    }).join(' ');
    svg.append(mk('path', { d, class: i ? 'line2' : 'line' }));
  });
  if (points.length) {
    const a = mk('text', { x: P, y: H - 6 }); a.textContent = new Date(points[0].t * 1000).toISOString().slice(11, 16); svg.append(a);
    const b = mk('text', { x: W - 34, y: H - 6 }); b.textContent = new Date(points[points.length - 1].t * 1000).toISOString().slice(11, 16); svg.append(b);
  }
  return el('div', { class: 'card' }, el('h2', { text: title }), svg,
    series.length > 1 ? el('div', { class: 'muted' }, series.map((s, i) => el('span', { class: i ? 'warn' : '' }, s.label + '  '))) : null);
}

function stat(id, label, value) {
  return el('div', { class: 'card stat' }, el('div', { class: 'v', 'data-stat': id, text: value }), el('div', { class: 'l', text: label }));
}

function table(headers, rows) {
  return el('div', { class: 'table-wrap' }, el('table', {},
    el('thead', {}, el('tr', {}, headers.map((h) => el('th', { text: h })))),
    el('tbody', {}, rows)));
}

// ---- pages -----------------------------------------------------------------------------------
const pages = {
  async overview(root) {
    const d = await api('/admin/ui/overview?window=' + (windowDay ? 'day' : 'hour'));
    showReplica(d.replica);
    const o = d.overview, t = o.total;
    const kinds = Object.entries(t.errors_by_kind || {});
    put(root, 
      el('div', { class: 'row' }, el('h1', { text: 'Overview' }),
        el('button', { type: 'button', class: windowDay ? 'secondary' : '', id: 'window-hour', onclick: () => { windowDay = false; refresh(); } }, 'Last hour'),
        el('button', { type: 'button', class: windowDay ? '' : 'secondary', id: 'window-day', onclick: () => { windowDay = true; refresh(); } }, 'Last day')),
      el('div', { class: 'grid' },
        stat('requests', 'requests (' + o.window + ')', num(t.requests)),
        stat('requests_per_s', 'requests/s', Number(t.requests_per_s).toFixed(3)),
        stat('hit_ratio', 'cache hit ratio', pct(t.hit_ratio)),
        stat('cache_hits', 'cache hits', num(t.cache_hits)),
        stat('saved_tokens', 'tokens saved by the cache', num(t.saved_tokens)),
        stat('saved_usd', 'dollars saved by the cache', usd(t.saved_usd)),
        stat('errors', 'errors', num(t.errors)),
        stat('p50_ms', 'p50 latency', ms(t.p50_ms)),
        stat('p99_ms', 'p99 latency', ms(t.p99_ms)),
        stat('in_flight', 'in flight now', num(d.in_flight))),
      el('div', { class: 'charts' },
        chart('Requests/s', o.series, [{ key: 'requests_per_s', label: 'req/s' }], (v) => v.toFixed(2)),
        chart('Cache hit ratio', o.series, [{ key: 'hit_ratio', label: 'hit ratio' }], pct),
        chart('Latency p50 / p99', o.series, [{ key: 'p50_ms', label: 'p50' }, { key: 'p99_ms', label: 'p99' }], ms),
        chart('Tokens saved', o.series, [{ key: 'saved_tokens', label: 'tokens' }], num),
        chart('Dollars saved', o.series, [{ key: 'saved_usd', label: 'USD' }], usd),
        chart('Errors', o.series, [{ key: 'errors', label: 'errors' }], num)),
      el('h2', { text: 'Errors by kind' }),
      kinds.length ? table(['kind', 'count'], kinds.map(([k, n]) => el('tr', {}, el('td', { text: k }), el('td', { 'data-error-kind': k, text: num(n) }))))
        : el('p', { class: 'muted', text: 'No errors in this window.' }),
      d.cache ? el('p', { class: 'muted', text: `Cache: ${num(d.cache.entries)} entries, ${num(d.cache.bytes)} bytes, ${num(d.cache.hits)} hits since start.` }) : null);
  },

  async keys(root) {
    const d = await api('/admin/ui/keys');
    if (!root.querySelector('#key-create')) put(root, keysSkeleton());
    const rows = d.data.map((k) => {
      const left = k.budget_left || {};
      const leftText = Object.entries(left).filter(([, v]) => v !== null).map(([n, v]) => n + ': ' + (n.startsWith('usd') ? usd(v) : num(v))).join(', ') || 'no cap';
      const extra = (u) => Object.entries(u || {}).filter(([n, v]) => n.endsWith('_tokens') && !['prompt_tokens', 'completion_tokens', 'saved_tokens'].includes(n) && v).map(([n, v]) => n.replace('_tokens', '') + ' ' + num(v)).join(', ');
      return el('tr', { 'data-key-id': k.id },
        el('td', {}, el('a', { href: '#keys', 'data-usage': k.id, onclick: (ev) => { ev.preventDefault(); keyUsage(k.id, k.name); } }, k.name)),
        el('td', { class: 'muted', text: k.id }),
        el('td', { text: k.source }),
        el('td', { 'data-col': 'requests', text: num(k.total.requests) }),
        el('td', { 'data-col': 'cache_hits', text: num(k.total.cache_hits) }),
        el('td', { 'data-col': 'tokens', text: num(k.total.prompt_tokens + k.total.completion_tokens), title: extra(k.total) }),
        el('td', { 'data-col': 'cost_usd', text: usd(k.total.cost_usd) }),
        el('td', { 'data-col': 'saved_usd', text: usd(k.total.saved_usd) }),
        el('td', { 'data-col': 'today', text: num(k.today.requests) + ' req, ' + num(tokens(k.today)) + ' tok' + (extra(k.today) ? ' (' + extra(k.today) + ')' : '') }),
        el('td', { 'data-col': 'budget_left', text: leftText }),
        el('td', { 'data-col': 'rate_limited', text: num(k.refusals.rate_limited) + ' / ' + num(k.refusals.budget_exceeded) }),
        el('td', {}, k.source === 'config' ? el('span', { class: 'muted', text: 'config file' }) : [
          el('button', { type: 'button', class: 'secondary', 'data-edit': k.id, onclick: () => editKey(k) }, 'Edit'), ' ',
          el('button', { type: 'button', class: 'secondary', 'data-revoke': k.id, onclick: () => revokeKey(k.id) }, state.armed === k.id ? 'Confirm revoke' : 'Revoke')]));
    });
    put($('keys-table'), table(['name', 'id', 'source', 'requests', 'hits', 'tokens', 'cost', 'saved', 'today', 'budget left', 'rate-limited / over budget', ''], rows));
  },

  async upstreams(root) {
    const d = await api('/admin/ui/upstreams');
    const rows = d.data.map((u) => {
      const h = u.last_hour || {};
      return el('tr', { 'data-upstream': u.name },
        el('td', { text: u.name }), el('td', { class: 'muted', text: u.url }),
        el('td', { class: u.healthy ? 'ok' : 'bad', text: u.healthy ? 'healthy' : 'unhealthy' }),
        el('td', { text: u.cooling_down_for_ms ? ms(u.cooling_down_for_ms) : '–' }),
        el('td', { text: num(u.consecutive_failures) }),
        el('td', { text: num(u.requests) }), el('td', { text: num(u.errors) }), el('td', { text: num(u.retries) }),
        el('td', { text: num(h.requests) }), el('td', { text: num(h.errors) }),
        el('td', { text: ms(h.p50_ms) }), el('td', { text: ms(h.p99_ms) }));
    });
    put(root, el('h1', { text: 'Upstreams' }),
      table(['name', 'url', 'health', 'cool-down left', 'failures in a row', 'requests', 'errors', 'retries', 'req (hour)', 'errors (hour)', 'p50 (hour)', 'p99 (hour)'], rows),
      el('p', { class: 'muted', text: 'Counters since start; the last-hour figures are this replica\'s, latency to the end of the answer.' }));
  },

  async requests(root) {
    const limit = $('request-limit') ? $('request-limit').value : '100';
    const d = await api('/admin/ui/requests?limit=' + limit);
    if (!$('request-list')) {
      const filter = el('input', { id: 'request-filter', type: 'search', placeholder: 'key, model, status, route…', oninput: filterRequests });
      const size = el('select', { id: 'request-limit', onchange: refresh }, ['100', '500'].map((n) => el('option', { value: n, text: 'last ' + n })));
      put(root, el('h1', { text: 'Requests' }), el('p', { id: 'request-ring', class: 'muted' }),
        el('form', { class: 'inline', onsubmit: (ev) => ev.preventDefault() }, el('label', {}, 'Filter', filter), el('label', {}, 'Show', size)),
        el('div', { id: 'request-list' }), el('div', { id: 'request-detail' }));
    }
    $('request-ring').textContent = `The last ${num(d.held)} requests this replica holds (${num(d.bytes)} of ${num(d.max_bytes)} bytes); click one for its bodies.`;
    const rows = d.data.map((r) => el('tr', { class: 'clickable', 'data-request': r.id, onclick: () => openRequest(r.id) },
      el('td', { text: time(r.at) }), el('td', { text: r.method + ' ' + r.path }), el('td', { text: r.key_name || '–' }),
      el('td', { text: r.model || '–' }), el('td', { class: 'muted', text: r.upstream || '–' }),
      el('td', { class: r.status >= 400 ? 'bad' : 'ok', text: r.status, title: r.error || '' }), el('td', { text: r.cache || '–' }),
      el('td', { text: ms(r.duration_ms) }), el('td', { text: num(r.prompt_tokens) + ' / ' + num(r.completion_tokens) })));
    put($('request-list'), table(['finished', 'route', 'key', 'model', 'upstream', 'status', 'cache', 'duration', 'tokens in / out'], rows));
    filterRequests();
  },

  async cache(root) {
    if (!$('cache-search')) put(root, cacheSkeleton());
    const q = $('cache-q').value, model = $('cache-model').value;
    const d = await api('/admin/ui/cache?q=' + encodeURIComponent(q) + '&model=' + encodeURIComponent(model));
    if (!d.enabled) { put($('cache-summary'), el('p', { class: 'muted', text: 'The cache is off (cache.enabled).' })); return; }
    const s = d.stats, ix = d.index;
    put($('cache-summary'), 
      el('div', { class: 'grid' }, stat('cache_entries', 'entries', num(s.entries)), stat('cache_bytes', 'bytes', num(s.bytes)),
        stat('cache_hit_ratio', 'hit ratio since start', pct(s.hit_ratio)), stat('cache_tokens_saved', 'tokens saved since start', num(s.tokens_saved))),
      el('h2', { text: 'Entries by model and namespace' }),
      el('p', { class: 'muted', text: `From the index of recorded requests: ${num(ix.indexed)} entries (at most ${num(ix.max_indexed)}, the oldest leave first${ix.dropped ? `; ${num(ix.dropped)} left` : ''}${ix.filled ? '' : '; still filling'}), ${num(ix.searchable)} of them searchable (${num(ix.index_bytes)} of ${num(ix.index_max_bytes)} bytes).` }),
      table(['model', 'namespace', 'route', 'entries', 'bytes'], ix.groups.map((g) => el('tr', {}, el('td', { text: g.model }), el('td', { text: g.namespace }), el('td', { text: g.route }), el('td', { text: num(g.entries) }), el('td', { text: num(g.bytes) })))));
    const m = d.search;
    put($('cache-results'), 
      el('p', { class: 'muted', text: `${num(m.matches)} matches among ${num(m.searched)} indexed entries${m.truncated ? ' (first 200 shown)' : ''}.` }),
      table(['', 'created', 'model', 'namespace', 'route', 'bytes', 'key'], m.data.map((e) => el('tr', { class: 'clickable', 'data-entry': e.key },
        el('td', {}, el('input', { type: 'checkbox', 'aria-label': 'select', checked: state.selected.has(e.key), onclick: (ev) => { ev.stopPropagation(); ev.target.checked ? state.selected.add(e.key) : state.selected.delete(e.key); } })),
        el('td', { text: time(e.created), onclick: () => openEntry(e.key) }), el('td', { text: e.model, onclick: () => openEntry(e.key) }),
        el('td', { text: e.namespace }), el('td', { text: e.route }), el('td', { text: num(e.bytes) }),
        el('td', { class: 'muted', text: e.key.slice(0, 16) + '…', onclick: () => openEntry(e.key) })))));
  },
};

// ---- keys: create, patch, revoke, usage per day ------------------------------------------------
function keysSkeleton() {
  const f = el('form', { id: 'key-create', class: 'inline' },
    el('label', {}, 'Name', el('input', { id: 'new-name', required: true, maxlength: 200 })),
    el('label', {}, 'Requests per minute', el('input', { id: 'new-per-minute', type: 'number', min: 1 })),
    el('label', {}, 'Tokens per day', el('input', { id: 'new-tokens-day', type: 'number', min: 1 })),
    el('label', {}, 'USD per day', el('input', { id: 'new-usd-day', type: 'number', min: 0, step: 'any' })),
    el('label', {}, 'Models (globs, comma-separated)', el('input', { id: 'new-models' })),
    el('button', { type: 'submit', id: 'create-key' }, 'Create key'));
  f.addEventListener('submit', (ev) => { ev.preventDefault(); createKey(); });
  return el('div', {}, el('h1', { text: 'Keys' }), el('h2', { text: 'New key' }), f,
    el('div', { id: 'new-secret' }), el('div', { id: 'keys-table' }), el('div', { id: 'key-edit' }), el('div', { id: 'key-usage' }));
}

function limitsBody(prefix) {
  const v = (id) => $(prefix + id).value.trim();
  const body = {};
  if (v('per-minute')) body.rate_limit = { per_minute: Number(v('per-minute')) };
  const budget = {};
  if (v('tokens-day')) budget.tokens_per_day = Number(v('tokens-day'));
  if (v('usd-day')) budget.usd_per_day = Number(v('usd-day'));
  if (Object.keys(budget).length) body.budget = budget;
  if (v('models')) body.models = v('models').split(',').map((s) => s.trim()).filter(Boolean);
  return body;
}

async function createKey() {
  try {
    const body = Object.assign({ name: $('new-name').value.trim() }, limitsBody('new-'));
    const k = await api('/admin/keys', { method: 'POST', body });
    put($('new-secret'), el('p', {}, 'Key ', el('strong', { text: k.name }), ' created. Copy its secret now; it is never shown again:'),
      el('p', { class: 'secret', id: 'created-secret', text: k.key }));
    $('key-create').reset();
    status('Key created.');
    await refresh();
  } catch (e) { fail(e); }
}

function editKey(k) {
  const f = el('form', { class: 'inline', id: 'key-edit-form' },
    el('label', {}, 'Name', el('input', { id: 'edit-name', value: k.name, required: true })),
    el('label', {}, 'Requests per minute', el('input', { id: 'edit-per-minute', type: 'number', min: 1, value: k.rate_limit && k.rate_limit.per_minute || '' })),
    el('label', {}, 'Tokens per day', el('input', { id: 'edit-tokens-day', type: 'number', min: 1, value: k.budget.tokens_per_day || '' })),
    el('label', {}, 'USD per day', el('input', { id: 'edit-usd-day', type: 'number', min: 0, step: 'any', value: k.budget.usd_per_day || '' })),
    el('label', {}, 'Models', el('input', { id: 'edit-models', value: (k.models || []).join(', ') })),
    el('button', { type: 'submit' }, 'Save'),
    el('button', { type: 'button', class: 'secondary', onclick: () => put($('key-edit')) }, 'Cancel'));
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const b = limitsBody('edit-');
      const body = { name: $('edit-name').value.trim(), rate_limit: b.rate_limit || null, budget: b.budget || null, models: b.models || null };
      await api('/admin/keys/' + encodeURIComponent(k.id), { method: 'PATCH', body });
      put($('key-edit'));
      status('Key updated.');
      await refresh();
    } catch (e) { fail(e); }
  });
  put($('key-edit'), el('h2', { text: 'Edit ' + k.name }), f);
}

async function revokeKey(id) {
  if (state.armed !== id) { state.armed = id; await refresh(); return; }
  state.armed = null;
  try {
    await api('/admin/keys/' + encodeURIComponent(id), { method: 'DELETE' });
    status('Key revoked.');
    await refresh();
  } catch (e) { fail(e); }
}

async function keyUsage(id, name) {
  try {
    const u = await api('/admin/keys/' + encodeURIComponent(id) + '/usage');
    put($('key-usage'), el('h2', { text: 'Usage of ' + name + ' per day (UTC)' }),
      table(['day', 'requests', 'hits', 'prompt', 'of which cache read / write', 'completion', 'of which reasoning', 'all tokens', 'cost', 'saved', 'errors'], u.days.slice().reverse().map((d) => el('tr', {},
        el('td', { text: d.date }), el('td', { text: num(d.requests) }), el('td', { text: num(d.cache_hits) }),
        el('td', { text: num(d.prompt_tokens) }), el('td', { text: num(d.cache_read_tokens) + ' / ' + num(d.cache_write_tokens) }),
        el('td', { text: num(d.completion_tokens) }), el('td', { text: num(d.reasoning_tokens) }), el('td', { text: num(tokens(d)) }),
        el('td', { text: usd(d.cost_usd) }), el('td', { text: usd(d.saved_usd) }), el('td', { text: num(d.errors) })))));
  } catch (e) { fail(e); }
}

// ---- requests: filter and detail --------------------------------------------------------------------------
function filterRequests() {
  const q = ($('request-filter') ? $('request-filter').value : '').trim().toLowerCase();
  for (const tr of document.querySelectorAll('#request-list tbody tr')) {
    tr.hidden = q !== '' && !tr.textContent.toLowerCase().includes(q);
  }
}

async function openRequest(id) {
  try {
    const r = await api('/admin/ui/requests/' + id);
    const b = r.bodies;
    put($('request-detail'), el('h2', { text: `Request ${r.id}: ${r.method} ${r.path} → ${r.status}` }),
      el('p', { class: 'muted', text: b.source === 'none' ? 'No body held: the body log is off and the cache has no entry for it.' : 'Bodies from the ' + (b.source === 'body_log' ? 'body log' : 'cache') + ', credentials redacted.' }),
      b.request !== null ? [el('h2', { text: 'Request' }), el('pre', { id: 'detail-request', text: pretty(b.request) })] : null,
      b.response !== null ? [el('h2', { text: 'Answer' }), el('pre', { id: 'detail-response', text: pretty(b.response) })] : null);
  } catch (e) { fail(e); }
}

// ---- cache: search, entry, why, export ---------------------------------------------------------
function cacheSkeleton() {
  const search = el('form', { id: 'cache-search', class: 'inline' },
    el('label', {}, 'Text in the request', el('input', { id: 'cache-q', type: 'search' })),
    el('label', {}, 'Model', el('input', { id: 'cache-model' })),
    el('button', { type: 'submit' }, 'Search'),
    el('button', { type: 'button', class: 'secondary', id: 'cache-export', onclick: exportSelected }, 'Export selected'));
  search.addEventListener('submit', (ev) => { ev.preventDefault(); refresh(); });
  const why = el('form', { id: 'cache-why', class: 'inline' },
    el('label', {}, 'Route', el('select', { id: 'why-route' }, ['', '/chat/completions', '/completions', '/embeddings', '/responses', '/messages'].map((r) => el('option', { value: r, text: r || '(from the body)' })))),
    el('textarea', { id: 'why-body', placeholder: '{"model": "...", "messages": [...]}' }),
    el('button', { type: 'submit' }, 'Why?'));
  why.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      let body;
      try { body = JSON.parse($('why-body').value); } catch (err) { status('The request is not JSON: ' + err.message, true); return; }
      const route = $('why-route').value || undefined;
      const w = await api('/admin/ui/cache/why', { method: 'POST', body: route ? { route, body } : { body } });
      $('why-result').textContent = w.text;
    } catch (e) { fail(e); }
  });
  return el('div', {}, el('h1', { text: 'Cache' }), el('div', { id: 'cache-summary' }), el('h2', { text: 'Search' }), search,
    el('div', { id: 'cache-results' }), el('div', { id: 'cache-entry' }),
    el('h2', { text: 'Why does a request miss?' }), why, el('pre', { id: 'why-result' }));
}

async function openEntry(key) {
  try {
    const e = await api('/admin/ui/cache/entries/' + encodeURIComponent(key));
    put($('cache-entry'), el('h2', { text: 'Entry ' + key.slice(0, 16) + '… (' + e.route + ', ' + e.namespace + ')' }),
      el('h2', { text: 'Request' }), el('pre', { id: 'entry-request', text: pretty(e.request) }),
      e.events ? [el('h2', { text: 'Recorded stream (' + e.events.length + ' events)' }), el('pre', { text: e.events.join('\n\n') })]
        : [el('h2', { text: 'Answer' }), el('pre', { text: pretty(e.response) })]);
  } catch (err) { fail(err); }
}

async function exportSelected() {
  if (!state.selected.size) { status('Select entries first.', true); return; }
  try {
    const r = await api('/admin/ui/cache/export', { method: 'POST', body: { keys: [...state.selected] }, raw: true });
    if (!r.ok) throw new Error('export failed: HTTP ' + r.status);
    const url = URL.createObjectURL(await r.blob());
    const a = el('a', { href: url, download: 'cassette.jsonl' });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
    const leftOut = Number(r.headers.get('X-Relay-Left-Out-Secrets') || 0);
    status(`Exported ${r.headers.get('X-Relay-Exported')} entries.` + (leftOut ? ` ${leftOut} left out: they hold a credential-shaped string.` : ''));
  } catch (e) { fail(e); }
}

// ---- navigation, login, polling ----------------------------------------------------------------
function showReplica(r) {
  if (r) $('replica').textContent = `replica ${r.hostname} · instance ${r.instance_id} · pid ${r.pid} · v${r.version}`;
}

async function refresh() {
  if (!current) return;
  try {
    await pages[current]($('page-' + current));
    if (current !== 'overview' && !$('replica').textContent) {
      const d = await api('/admin/ui/overview');
      showReplica(d.replica);
    }
    document.body.dataset.loaded = current;
    if ($('status').className === 'muted') status('Updated ' + new Date().toISOString().slice(11, 19) + ' UTC');
  } catch (e) { fail(e); }
}

function show(page) {
  if (!pages[page]) page = 'overview';
  // a created key's secret is shown once: gone when the keys page is left
  if (page !== 'keys' && $('new-secret')) put($('new-secret'));
  current = page;
  delete document.body.dataset.loaded;
  for (const s of document.querySelectorAll('.page')) s.hidden = s.id !== 'page-' + page;
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === page);
  status('');
  refresh();
  clearInterval(timer);
  // forms (keys, cache) are not polled while being filled in: only their figures are
  timer = setInterval(() => { if (!document.hidden && current !== 'cache') refresh(); }, POLL_MS);
}

function logout(msg) {
  sessionStorage.removeItem(KEY);
  clearInterval(timer);
  current = null;
  for (const s of document.querySelectorAll('.page')) { s.hidden = true; put(s); }
  $('nav').hidden = true; $('logout').hidden = true; $('login').hidden = false;
  $('replica').textContent = '';
  $('login-error').textContent = msg || '';
  status('');
}

function signedIn() {
  $('login').hidden = true; $('nav').hidden = false; $('logout').hidden = false;
  show((location.hash || '#overview').slice(1));
}

document.addEventListener('DOMContentLoaded', () => {
  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY, $('admin-key').value.trim());
    $('admin-key').value = '';
    try { await api('/admin/ui/overview'); signedIn(); } catch (e) { fail(e); }
  });
  $('logout').addEventListener('click', () => logout(''));
  window.addEventListener('hashchange', () => { if (sessionStorage.getItem(KEY)) show(location.hash.slice(1)); });
  if (sessionStorage.getItem(KEY)) signedIn(); else logout('');
});
