// app.js: the Marina console. Vanilla JavaScript, no build step.
// Every datum comes from the /v1 API with the token as a bearer header;
// the token lives in sessionStorage for this tab only.
(function () {
  'use strict';

  const TOKEN_KEY = 'marina.token';
  const REFRESH_MS = 3000; // cluster, database and node views
  const STATS_MS = 5000; // graphs
  const HOUR_MS = 3600 * 1000;
  const EVICTIONS = ['noeviction', 'allkeys-lru', 'allkeys-lfu', 'allkeys-random',
    'volatile-lru', 'volatile-lfu', 'volatile-random', 'volatile-ttl'];

  const app = {
    token: sessionStorage.getItem(TOKEN_KEY) || '',
    gen: 0, // bumped on every navigation: stale answers are dropped
    timers: new Set(),
    loops: 0, // refresh loops started, for their error slots
    errors: new Map(), // refresh loop -> its last error, shown in the banner
    flash: '',
    statsMissingUntil: 0, // the stats API answered 404: do not ask again for a while
  };

  // ---------- DOM helpers ----------

  // h builds an element: h('a', {href: '#/', class: 'x', onclick: fn}, 'text', child, [more]).
  function h(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) {
      const v = attrs[k];
      if (v == null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
      else if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k === 'value') e.value = v;
      else if (k === 'checked' || k === 'disabled' || k === 'hidden' || k === 'selected') e[k] = !!v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    append(e, children);
    return e;
  }
  function append(e, children) {
    for (const c of children) {
      if (c == null || c === false) continue;
      if (Array.isArray(c)) append(e, c);
      else if (c instanceof Node) e.appendChild(c);
      else e.appendChild(document.createTextNode(String(c)));
    }
  }
  // fill replaces an element's children (arrays are flattened, nulls skipped).
  function fill(e, ...children) {
    e.replaceChildren();
    append(e, children);
  }
  const $ = (sel, root) => (root || document).querySelector(sel);
  function badge(text, cls) { return h('span', { class: 'badge ' + (cls || text) }, text); }
  function link(href, text) { return h('a', { href: href }, text); }
  function kv(pairs) {
    const dl = h('dl', { class: 'kv' });
    for (const [k, v] of pairs) {
      if (v == null || v === '') continue;
      dl.appendChild(h('dt', null, k));
      dl.appendChild(h('dd', null, v));
    }
    return dl;
  }
  function showError(el, msg) { el.textContent = msg || ''; el.hidden = !msg; }

  // ---------- formatting ----------

  function fmtBytes(n) {
    if (n == null || isNaN(n)) return '—';
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0, v = Math.abs(n);
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    const s = i === 0 ? String(Math.round(v)) : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
    return (n < 0 ? '-' : '') + s.replace(/\.0+$|(\.\d*?)0+$/, '$1') + ' ' + u[i];
  }
  // sizeInput writes a byte count as the API reads it back ("64MiB").
  function sizeInput(n) {
    for (const [u, m] of [['GiB', 1 << 30], ['MiB', 1 << 20], ['KiB', 1 << 10]]) {
      if (n >= m && n % m === 0) return (n / m) + u;
    }
    return String(n);
  }
  const trimZeros = s => s.includes('.') ? s.replace(/\.?0+$/, '') : s;
  function fmtNum(n, digits) {
    if (n == null || isNaN(n)) return '—';
    const a = Math.abs(n);
    if (a >= 1e9) return trimZeros((n / 1e9).toFixed(1)) + 'G';
    if (a >= 1e6) return trimZeros((n / 1e6).toFixed(1)) + 'M';
    if (a >= 1e4) return trimZeros((n / 1e3).toFixed(1)) + 'k';
    if (Number.isInteger(n)) return String(n);
    return trimZeros(n.toFixed(digits != null ? digits : a < 10 ? 2 : 1));
  }
  function fmtPct(x) {
    if (x == null || isNaN(x)) return '—';
    const p = x * 100;
    return (Number.isInteger(p) ? String(p) : p.toFixed(1)) + '%';
  }
  function fmtMicros(us) {
    if (us == null || isNaN(us)) return '—';
    if (us === 0) return '0';
    if (us >= 1e6) return (us / 1e6).toFixed(2) + ' s';
    if (us >= 1000) return (us / 1000).toFixed(us >= 1e4 ? 0 : 1) + ' ms';
    return (us >= 10 ? us.toFixed(0) : us.toFixed(1)) + ' µs';
  }
  function fmtTime(s) {
    if (!s) return '—';
    const d = new Date(s);
    if (isNaN(d)) return s;
    const now = new Date();
    const sameDay = d.toDateString() === now.toDateString();
    return sameDay ? d.toLocaleTimeString() : d.toLocaleString();
  }
  function ago(s) {
    if (!s) return '—';
    const sec = Math.round((Date.now() - new Date(s)) / 1000);
    if (sec < 2) return 'just now';
    if (sec < 120) return sec + 's ago';
    if (sec < 7200) return Math.round(sec / 60) + 'm ago';
    return Math.round(sec / 3600) + 'h ago';
  }
  function labelsText(labels) {
    return Object.keys(labels || {}).sort().map(k => k + '=' + labels[k]).join(', ');
  }
  // parseLabels reads "team=payments, env=prod" (commas or new lines).
  function parseLabels(s) {
    const out = {};
    for (const part of s.split(/[,\n]/)) {
      const p = part.trim();
      if (!p) continue;
      const i = p.indexOf('=');
      if (i <= 0) throw new Error(`labels: "${p}" is not key=value (separate pairs with commas)`);
      out[p.slice(0, i).trim()] = p.slice(i + 1).trim();
    }
    return out;
  }
  function splitHostPort(hp) {
    const i = hp.lastIndexOf(':');
    let host = hp.slice(0, i);
    if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
    return [host, hp.slice(i + 1)];
  }
  function shellQuote(s) { return "'" + String(s).replace(/'/g, "'\\''") + "'"; }

  // ---------- API ----------

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  // call does one API request. Errors carry the API's own message verbatim.
  // While the cluster has no leader, a refused request that changed nothing
  // is retried for up to RETRY_MS, and reads answered from a node's own
  // copy of the state are marked: both in the leader banner.
  const RETRY_MS = 30000;
  async function call(method, path, body, token) {
    const start = Date.now();
    for (;;) {
      try {
        const data = await callOnce(method, path, body, token);
        return data;
      } catch (e) {
        if (!e.retrySafe || Date.now() - start > RETRY_MS) {
          if (e.retrySafe) leaderBanner('');
          throw e;
        }
        leaderBanner('No leader, retrying: ' + e.message);
        await new Promise(r => setTimeout(r, 500));
      }
    }
  }

  async function callOnce(method, path, body, token) {
    const headers = { 'Authorization': 'Bearer ' + (token == null ? app.token : token), 'Accept': 'application/json' };
    const init = { method: method, headers: headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, `${method} ${path}: cannot reach the node (${e.message})`);
    }
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (!res.ok) {
      const msg = data && typeof data.error === 'string' ? data.error : (text.trim() || res.status + ' ' + res.statusText);
      const err = new ApiError(res.status, msg);
      err.retrySafe = res.status === 503 && res.headers.get('X-Marina-Retry') === 'safe';
      throw err;
    }
    const local = res.headers.get('X-Marina-Local-Read');
    if (local) {
      const ms = parseInt(res.headers.get('X-Marina-Stale-Ms') || '-1', 10);
      const when = ms >= 0 ? `${(ms / 1000).toFixed(1)} s ago` : 'not since it started';
      leaderBanner(`No leader, retrying: showing ${local}; it last heard from a leader ${when}.`);
    } else {
      leaderBanner('');
    }
    return data;
  }

  // leaderBanner shows (or with '' hides) the cluster's leadership trouble.
  function leaderBanner(msg) {
    const b = $('#leader-banner');
    if (!b) return;
    b.textContent = msg;
    b.hidden = !msg;
  }

  // api is call for the logged-in views: a 401 ends the session.
  async function api(method, path, body) {
    try {
      return await call(method, path, body);
    } catch (e) {
      if (e.status === 401) {
        logout('The API refused the token: ' + e.message);
      }
      throw e;
    }
  }

  // ---------- session ----------

  function showLogin(msg) {
    stopTimers();
    app.gen++;
    $('#top').hidden = true;
    $('#app').hidden = true;
    $('#banner').hidden = true;
    $('#login').hidden = false;
    showError($('#login-error'), msg);
    const input = $('#login-token');
    input.value = '';
    input.focus();
  }

  function logout(msg) {
    app.token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(msg || '');
  }

  async function login(ev) {
    ev.preventDefault();
    const token = $('#login-token').value.trim();
    const btn = $('#login-submit');
    btn.disabled = true;
    showError($('#login-error'), '');
    try {
      await call('GET', '/v1/status', undefined, token);
      app.token = token;
      sessionStorage.setItem(TOKEN_KEY, token);
      showApp();
    } catch (e) {
      showError($('#login-error'), e.message);
    } finally {
      btn.disabled = false;
    }
  }

  function showApp() {
    $('#login').hidden = true;
    $('#top').hidden = false;
    $('#app').hidden = false;
    route();
  }

  // ---------- refresh loop ----------

  function stopTimers() {
    for (const t of app.timers) clearTimeout(t);
    app.timers.clear();
    app.errors.clear();
  }

  // every runs fn now and then every ms while the current view lives;
  // runs never overlap. fn gets alive(), false once the view is gone.
  // A failure shows in the banner until this loop succeeds again.
  function every(ms, fn) {
    const gen = app.gen;
    const id = ++app.loops;
    const tick = async () => {
      if (gen !== app.gen) return;
      try {
        await fn(() => gen === app.gen);
        if (gen === app.gen) app.errors.delete(id);
      } catch (e) {
        if (gen === app.gen && e.status !== 401) app.errors.set(id, e.message);
      }
      if (gen !== app.gen) return;
      showErrors();
      const t = setTimeout(() => { app.timers.delete(t); tick(); }, ms);
      app.timers.add(t);
    };
    tick();
  }

  function showErrors() {
    const msg = [...new Set(app.errors.values())].join('\n');
    const b = $('#banner');
    b.textContent = msg;
    b.hidden = !msg;
    $('#refresh-state').textContent = msg ? '' : 'updated ' + new Date().toLocaleTimeString();
  }

  // ---------- router ----------

  function route() {
    stopTimers();
    app.gen++;
    showErrors();
    const root = $('#app');
    root.replaceChildren();
    const hash = location.hash.replace(/^#\/?/, '');
    let parts;
    try {
      parts = hash.split('/').map(decodeURIComponent);
    } catch (e) {
      parts = ['not-found']; // a malformed %-escape: the "not found" page, not a blank one
    }
    document.querySelectorAll('header nav a').forEach(a => a.classList.remove('active'));
    if (app.flash) {
      root.appendChild(h('div', { class: 'notice', id: 'flash' }, app.flash));
      app.flash = '';
    }
    if (hash === '') {
      $('#nav-overview').classList.add('active');
      overview(root);
    } else if (parts[0] === 'dbs' && parts.length === 1) {
      $('#nav-dbs').classList.add('active');
      dbList(root);
    } else if (parts[0] === 'dbs' && parts[1]) {
      $('#nav-dbs').classList.add('active');
      dbPage(root, parts[1]);
    } else if (parts[0] === 'nodes' && parts[1]) {
      $('#nav-overview').classList.add('active');
      nodePage(root, parts[1]);
    } else {
      root.appendChild(h('div', { class: 'card' }, h('h1', null, 'Not found'),
        h('p', null, 'No page at ', h('code', null, location.hash), '. ', link('#/', 'Back to the overview'))));
    }
  }

  function servedBy(st) {
    const e = $('#served-by');
    e.textContent = `${location.host} · leader ${st.leader || 'none'}`;
    e.title = `this node forwards to the leader; the last answer came from ${st.served_by}`;
  }

  // ---------- capacity bar ----------

  // capacityBar shows allocated (reserved maxmemory) and used memory against a node's memory.
  function capacityBar(memory, allocated, used) {
    const pct = v => Math.max(0, Math.min(100, memory > 0 ? v / memory * 100 : 0));
    const a = h('div', { class: 'alloc' }), u = h('div', { class: 'used' });
    a.style.width = pct(allocated) + '%';
    u.style.width = pct(used) + '%';
    const bar = h('div', { class: 'bar' + (allocated > memory ? ' over' : ''), role: 'meter',
      'aria-valuemin': 0, 'aria-valuemax': memory, 'aria-valuenow': allocated,
      title: `allocated ${fmtBytes(allocated)} (${pct(allocated).toFixed(0)}%), used ${fmtBytes(used)}, capacity ${fmtBytes(memory)}` }, a, u);
    return bar;
  }
  function capacityLegend() {
    return h('div', { class: 'legend' },
      h('span', null, h('i', { class: 'l-alloc' }), 'allocated (maxmemory reserved)'),
      h('span', null, h('i', { class: 'l-used' }), 'used'),
      h('span', null, h('i', { class: 'l-free' }), 'free capacity'));
  }
  function nodeBadges(n) {
    return [badge(n.status), ' ', n.leader ? badge('leader', 'leader') : null, n.leader ? ' ' : null,
      n.draining ? badge('draining') : null, n.draining ? ' ' : null,
      h('span', { class: 'muted small' }, n.voter ? 'voter' : 'non-voter')];
  }

  // ---------- overview ----------

  function overview(root) {
    const totals = h('div', { class: 'totals', id: 'totals' });
    const nodes = h('div', { class: 'card', id: 'nodes' }, h('h2', null, 'Nodes'), h('p', { class: 'muted' }, 'Loading…'));
    const events = h('div', { class: 'card', id: 'events' }, h('h2', null, 'Recent events'));
    root.append(h('h1', null, 'Cluster'), totals, nodes, events);
    every(REFRESH_MS, async alive => {
      const [st, evs] = await Promise.all([api('GET', '/v1/status'), api('GET', '/v1/events')]);
      if (!alive()) return;
      servedBy(st);
      const used = st.nodes.reduce((s, n) => s + (n.used || 0), 0);
      const total = (k, v, sub) => h('div', { class: 'total' }, h('div', { class: 'k' }, k), h('div', { class: 'v' }, v),
        sub ? h('div', { class: 'muted small' }, sub) : null);
      totals.replaceChildren(
        total('Nodes up', `${st.nodes_up} / ${st.nodes.length}`, 'leader ' + (st.leader || 'none')),
        total('Databases ready', `${st.dbs_ready} / ${st.dbs}`, h('a', { href: '#/dbs' }, 'all databases')),
        total('Instances running', `${st.instances_running} / ${st.instances}`),
        total('Memory allocated', fmtBytes(st.allocated), `of ${fmtBytes(st.memory)} (${st.memory ? Math.round(st.allocated / st.memory * 100) : 0}%)`),
        total('Memory used', fmtBytes(used), 'by redis-servers'));
      const rows = st.nodes.map(n => h('tr', { 'data-node': n.id },
        h('td', null, link('#/nodes/' + encodeURIComponent(n.id), n.id)),
        h('td', { class: 'mono' }, n.addr),
        h('td', null, n.zone || '—'),
        h('td', null, nodeBadges(n)),
        h('td', { class: 'num' }, `${n.instances} (${n.masters} m)`),
        h('td', null, capacityBar(n.memory, n.allocated, n.used)),
        h('td', { class: 'num small' }, `${fmtBytes(n.allocated)} / ${fmtBytes(n.used)} / ${fmtBytes(n.memory)}`),
        h('td', { class: 'small muted' }, n.last_seen ? ago(n.last_seen) : '—')));
      nodes.replaceChildren(h('h2', null, 'Nodes'), capacityLegend(),
        h('table', null, h('thead', null, h('tr', null, ['Node', 'Address', 'Zone', 'Status', 'Instances', 'Capacity',
          'Allocated / used / memory', 'Last report'].map((t, i) => h('th', { class: i === 4 || i === 6 ? 'num' : null }, t)))),
        h('tbody', null, rows)));
      events.replaceChildren(h('h2', null, 'Recent events'), eventsTable(evs.slice(-20).reverse()));
    });
  }

  function eventsTable(evs) {
    if (!evs.length) return h('p', { class: 'muted' }, 'No events yet.');
    return h('table', { class: 'events' },
      h('thead', null, h('tr', null, ['Time', 'Type', 'Database', 'Node', 'Instance', 'Epoch', 'Reason'].map(t => h('th', null, t)))),
      h('tbody', null, evs.map(e => h('tr', null,
        h('td', { title: e.time }, fmtTime(e.time)),
        h('td', { class: 'etype' }, e.type),
        h('td', null, e.db ? [link('#/dbs/' + encodeURIComponent(e.db), e.db), ` shard ${e.shard}`] : '—'),
        h('td', null, e.node ? link('#/nodes/' + encodeURIComponent(e.node), e.node) : '—'),
        h('td', { class: 'mono small' }, e.instance || '—'),
        h('td', { class: 'num' }, e.epoch || '—'),
        h('td', null, e.reason || '')))));
  }

  // ---------- stats ----------

  // fetchStats returns the stats answer, or null when this server has no stats API.
  async function fetchStats(path, fromSec) {
    if (Date.now() < app.statsMissingUntil) return null;
    try {
      return await api('GET', path + (fromSec ? '?from=' + fromSec : ''));
    } catch (e) {
      if (e.status === 404 && /no such endpoint/.test(e.message)) {
        app.statsMissingUntil = Date.now() + 60000;
        return null;
      }
      throw e;
    }
  }

  // settled leaves out a point that is still filling: the API stamps each
  // point with the end of its interval, so the current one lies in the
  // future and holds only the instances that have reported so far.
  function settled(points) {
    const n = points.length;
    if (n && Date.parse(points[n - 1].t) > Date.now()) return points.slice(0, n - 1);
    return points;
  }

  // Series keeps one stats series, merged incrementally, trimmed to an hour.
  class Series {
    constructor() { this.points = []; this.interval = 5; }
    lastSec() {
      const p = this.points[this.points.length - 1];
      return p ? Math.floor(Date.parse(p.t) / 1000) : 0;
    }
    // since is the "from" of the next request: re-read the last few
    // intervals, which may still change.
    since() { const l = this.lastSec(); return l ? l - 3 * this.interval : 0; }
    merge(ans, fromSec) {
      if (ans.interval_seconds) this.interval = ans.interval_seconds;
      const incoming = (ans.points || []).map(p => Object.assign({ ms: Date.parse(p.t) }, p));
      if (fromSec) {
        const cut = fromSec * 1000;
        this.points = this.points.filter(p => p.ms < cut);
      } else {
        this.points = [];
      }
      const seen = new Set(this.points.map(p => p.ms));
      for (const p of incoming) if (!seen.has(p.ms)) this.points.push(p);
      this.points.sort((a, b) => a.ms - b.ms);
      const min = Date.now() - HOUR_MS;
      this.points = this.points.filter(p => p.ms >= min);
    }
    get(field) { return settled(this.points).map(p => [p.ms, p[field] == null ? null : p[field]]); }
    latest() { const ps = settled(this.points); return ps[ps.length - 1] || null; }
  }

  const COLORS = ['#0b5cad', '#e07b24', '#1f8a4c', '#8e44ad'];

  // chartSpecs are the graphs of a database or node, by element id.
  function chartSpecs(withDB) {
    const specs = [
      { id: 'chart-ops', title: 'Operations / s', series: [['ops/s', 'ops_per_sec']], fmt: v => fmtNum(v) },
      { id: 'chart-memory', title: 'Memory', series: [['used', 'used_memory'], ['maxmemory', 'maxmemory']], fmt: v => fmtBytes(v), bytes: true },
      { id: 'chart-clients', title: 'Clients', series: [['clients', 'clients']], fmt: v => fmtNum(v, 0), integer: true },
      { id: 'chart-hits', title: 'Hit ratio', series: [['hit ratio', 'hit_ratio']], fmt: v => fmtPct(v), yMax: 1 },
      { id: 'chart-latency', title: 'Latency (mean per command)', series: [['latency', 'latency_us']], fmt: v => fmtMicros(v) },
      { id: 'chart-evictions', title: 'Evictions and expirations / s', series: [['evicted/s', 'evicted_per_sec'], ['expired/s', 'expired_per_sec']], fmt: v => fmtNum(v) },
    ];
    if (!withDB) specs.push({ id: 'chart-net', title: 'Network / s', series: [['in', 'net_in_per_sec'], ['out', 'net_out_per_sec']], fmt: v => fmtBytes(v), bytes: true });
    return specs;
  }

  function chartsCard(specs) {
    const grid = h('div', { class: 'charts' });
    for (const s of specs) {
      const el = h('div', { class: 'chart', id: s.id, 'data-title': s.title, 'data-points': '0' },
        h('h3', null, h('span', null, s.title), h('span', { class: 'cur' }, '')),
        s.series.length > 1 ? h('div', { class: 'keys' }, s.series.map((x, i) => h('span', null, h('i', { class: 'k' + i }), x[0]))) : null);
      el.querySelectorAll('.keys i').forEach((i, n) => { i.style.background = COLORS[n]; });
      grid.appendChild(el);
    }
    return grid;
  }

  function drawCharts(specs, series) {
    const last = series.latest();
    const to = Math.max(Date.now(), last ? last.ms : 0); // a browser clock behind the nodes' still shows the latest
    const first = series.points.length ? series.points[0].ms : to;
    const from = Math.max(to - HOUR_MS, Math.min(first, to - 60000));
    for (const s of specs) {
      const el = document.getElementById(s.id);
      if (!el) continue;
      MarinaChart.render(el, {
        from: from, to: to, yMax: s.yMax, format: s.fmt, bytes: s.bytes, integer: s.integer, gapMs: series.interval * 3000,
        series: s.series.map(([name, field], i) => ({ name: name, color: COLORS[i], points: series.get(field) })),
      });
      const cur = last ? last[s.series[0][1]] : null;
      el.querySelector('.cur').textContent = cur == null ? '' : s.fmt(cur);
    }
  }

  // ---------- databases ----------

  function dbList(root) {
    const formCard = createForm();
    formCard.hidden = true;
    const toggle = h('button', { id: 'create-toggle', type: 'button', onclick: () => {
      formCard.hidden = !formCard.hidden;
      if (!formCard.hidden) $('input[name=name]', formCard).focus();
    } }, 'New database');
    const list = h('div', { class: 'card', id: 'db-list' }, h('p', { class: 'muted' }, 'Loading…'));
    root.append(h('div', { class: 'row' }, h('h1', null, 'Databases'), h('span', { class: 'spacer' }), toggle), formCard, list);
    every(REFRESH_MS, async alive => {
      const dbs = await api('GET', '/v1/dbs');
      if (!alive()) return;
      // One request for every database's latest figures, not one each.
      const latest = await api('GET', '/v1/stats/dbs').catch(() => null);
      if (!alive()) return;
      list.replaceChildren(dbTable(dbs, dbs.map(d => (latest && latest.dbs && latest.dbs[d.name]) || null)));
    });
  }

  function dbTable(dbs, stats) {
    if (!dbs.length) return h('p', { class: 'muted', id: 'no-dbs' }, 'No databases yet. Create one with “New database”.');
    const rows = dbs.map((d, i) => {
      const p = stats[i];
      let used = p ? p.used_memory : null;
      if (used == null) used = d.shards.reduce((s, sh) => s + (sh.master.used_memory || 0), 0);
      const limit = p && p.maxmemory ? p.maxmemory : d.memory * d.shard_count;
      const ep = d.endpoints || [];
      return h('tr', { 'data-db': d.name },
        h('td', null, link('#/dbs/' + encodeURIComponent(d.name), d.name)),
        h('td', null, badge(d.status)),
        h('td', { class: 'num' }, `${d.shard_count} × ${1 + d.replicas}`),
        h('td', { class: 'num' }, `${fmtBytes(used)} / ${fmtBytes(limit)}`),
        h('td', { class: 'num' }, p ? fmtNum(p.ops_per_sec) : '—'),
        h('td', { class: 'num' }, p ? fmtNum(p.clients, 0) : '—'),
        h('td', { class: 'mono small' }, ep.length ? [ep[0], ep.length > 1 ? h('span', { class: 'muted', title: ep.join('\n') }, ` +${ep.length - 1}`) : null] : '—'),
        h('td', { class: 'small' }, `${d.persistence} · ${d.eviction}${d.durability === 'replicated' ? ' · replicated' : ''}`),
        h('td', { class: 'small' }, d.owner || ''));
    });
    return h('table', { id: 'db-table' },
      h('thead', null, h('tr', null, ['Name', 'Status', 'Shards × copies', 'Memory used / limit', 'Ops/s', 'Clients', 'Endpoint',
        'Persistence · eviction', 'Owner'].map((t, i) => h('th', { class: i >= 2 && i <= 5 ? 'num' : null }, t)))),
      h('tbody', null, rows));
  }

  function select(name, options, value) {
    return h('select', { name: name }, options.map(o => h('option', { value: o, selected: o === value }, o)));
  }
  // fields maps a form's controls by name (form.elements' named access is shadowed by its own properties).
  function fields(form) {
    const o = {};
    for (const e of form.elements) if (e.name) o[e.name] = e;
    return o;
  }
  function field(label, input, hint) { return h('label', null, label, input, hint ? h('span', { class: 'hint' }, hint) : null); }

  function createForm() {
    const err = h('div', { class: 'error', id: 'create-error', role: 'alert', hidden: true });
    const ok = h('div', { class: 'notice', id: 'create-ok', hidden: true });
    const form = h('form', { id: 'create-form', autocomplete: 'off', novalidate: true }, // the API validates, in its words
      h('h2', null, 'New database'),
      h('div', { class: 'grid' },
        field('Name', h('input', { name: 'name', placeholder: 'orders', spellcheck: 'false' }), 'lowercase letters, digits, -'),
        field('Memory per shard', h('input', { name: 'memory', value: '64MiB' }), 'bytes or 64MiB, 1GiB, 512mb'),
        field('Shards', h('input', { name: 'shards', type: 'number', min: 1, max: 256, value: 1 })),
        field('Replicas per shard', h('input', { name: 'replicas', type: 'number', min: 0, max: 5, value: 1 })),
        field('Persistence', select('persistence', ['none', 'rdb', 'aof'], 'none')),
        field('Eviction', select('eviction', EVICTIONS, 'noeviction')),
        field('Durability', select('durability', ['async', 'replicated'], 'async'), 'replicated waits for a replica'),
        field('Read from', select('read_from', ['master', 'replica', 'any'], 'master')),
        field('Password', h('input', { name: 'password', type: 'text', placeholder: 'generated when empty', spellcheck: 'false' })),
        field('Owner', h('input', { name: 'owner', placeholder: 'team-payments' })),
        field('Labels', h('input', { name: 'labels', placeholder: 'env=prod, tier=cache' }), 'key=value, comma separated')),
      err, ok,
      h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'create-submit' }, 'Create database')));
    form.addEventListener('submit', async ev => {
      ev.preventDefault();
      showError(err, '');
      ok.hidden = true;
      const f = fields(form);
      const body = {
        name: f.name.value.trim(),
        persistence: f.persistence.value, eviction: f.eviction.value,
        durability: f.durability.value, read_from: f.read_from.value,
      };
      const mem = f.memory.value.trim();
      if (mem) body.memory = /^\d+$/.test(mem) ? Number(mem) : mem;
      if (f.shards.value !== '') body.shards = Number(f.shards.value);
      if (f.replicas.value !== '') body.replicas = Number(f.replicas.value);
      if (f.password.value) body.password = f.password.value;
      if (f.owner.value.trim()) body.owner = f.owner.value.trim();
      try {
        const labels = parseLabels(f.labels.value);
        if (Object.keys(labels).length) body.labels = labels;
      } catch (e) {
        showError(err, e.message);
        return;
      }
      const btn = $('#create-submit');
      btn.disabled = true;
      try {
        const db = await api('POST', '/v1/dbs', body);
        ok.replaceChildren('Created ', link('#/dbs/' + encodeURIComponent(db.name), db.name),
          ` (${db.shard_count} × ${1 + db.replicas} instances, status ${db.status}).`);
        ok.hidden = false;
        f.name.value = ''; f.password.value = ''; f.labels.value = ''; f.owner.value = '';
        const list = await api('GET', '/v1/dbs');
        const tbl = $('#db-list');
        if (tbl) tbl.replaceChildren(dbTable(list, list.map(() => null)));
      } catch (e) {
        showError(err, e.message);
      } finally {
        btn.disabled = false;
      }
    });
    return h('div', { class: 'card', id: 'create-card' }, form);
  }

  function dbPage(root, name) {
    const enc = encodeURIComponent(name);
    const title = h('h1', null, name, ' ', h('span', { id: 'db-status' }));
    const editBtn = h('button', { type: 'button', class: 'secondary', id: 'edit-toggle' }, 'Edit');
    const delBtn = h('button', { type: 'button', class: 'danger secondary', id: 'delete-toggle' }, 'Delete…');
    const summary = h('div', { class: 'card', id: 'db-summary' }, h('p', { class: 'muted' }, 'Loading…'));
    const connect = h('div', { class: 'card', id: 'db-connect' });
    const editCard = h('div', { class: 'card', id: 'edit-card', hidden: true });
    const delCard = h('div', { class: 'card', id: 'delete-card', hidden: true });
    const topo = h('div', { class: 'card', id: 'db-topology' });
    const specs = chartSpecs(true);
    const statsNote = h('p', { class: 'muted small', id: 'stats-note' }, 'Last hour, refreshed every 5 s.');
    const charts = h('div', { class: 'card', id: 'db-charts' }, h('h2', null, 'Statistics'), statsNote, chartsCard(specs));
    const events = h('div', { class: 'card', id: 'db-events' }, h('h2', null, 'Events'));
    root.append(h('div', { class: 'row' }, title, h('span', { class: 'spacer' }), editBtn, delBtn), editCard, delCard,
      h('div', { class: 'row' }, summary, connect), topo, charts, events);

    const view = { db: null, inst: {}, showPw: false, switchMsgs: {}, armed: {}, busy: {}, force: {} };
    const series = new Series();

    editBtn.addEventListener('click', () => {
      if (!view.db) return;
      editCard.hidden = !editCard.hidden;
      if (!editCard.hidden) editCard.replaceChildren(editForm(view.db, db => { view.db = db; render(); }));
    });
    delBtn.addEventListener('click', () => {
      delCard.hidden = !delCard.hidden;
      if (!delCard.hidden) delCard.replaceChildren(deleteForm(name));
    });

    const render = () => {
      const db = view.db;
      $('#db-status').replaceChildren(badge(db.status));
      summary.replaceChildren(h('h2', null, 'Configuration'), kv([
        ['Memory per shard', fmtBytes(db.memory)],
        ['Shards', String(db.shard_count)],
        ['Replicas per shard', String(db.replicas)],
        ['Total maxmemory', fmtBytes(db.memory * db.shard_count) + ` (× ${1 + db.replicas} copies)`],
        ['Persistence', db.persistence],
        ['Eviction', db.eviction],
        ['Durability', db.durability],
        ['Read from', db.read_from],
        ['Owner', db.owner || '—'],
        ['Labels', labelsText(db.labels) || '—'],
        ['Created', fmtTime(db.created_at)],
        ['Updated', fmtTime(db.updated_at)],
      ]));
      fill(connect, connectInfo(db, view));
      fill(topo, topology(db, view));
    };

    every(REFRESH_MS, async alive => {
      let db, evs;
      try {
        [db, evs] = await Promise.all([api('GET', '/v1/dbs/' + enc), api('GET', '/v1/events?db=' + enc)]);
      } catch (e) {
        if (e.status === 404 && alive()) {
          summary.replaceChildren(h('div', { class: 'error', id: 'db-missing' }, e.message));
          return;
        }
        throw e;
      }
      if (!alive()) return;
      view.db = db;
      render();
      events.replaceChildren(h('h2', null, 'Events'), eventsTable(evs.slice(-15).reverse()));
    });
    every(STATS_MS, async alive => {
      const from = series.since();
      let ans;
      try {
        ans = await fetchStats('/v1/dbs/' + enc + '/stats', from);
      } catch (e) {
        // Shown beside the graphs, not as a page error: the rest still works.
        if (alive() && e.status !== 401) statsNote.textContent = 'Statistics: ' + e.message;
        return;
      }
      if (!alive()) return;
      if (!ans) {
        statsNote.textContent = 'This server has no statistics API (GET /v1/dbs/NAME/stats): graphs are not available.';
        charts.querySelector('.charts').hidden = true;
        return;
      }
      charts.querySelector('.charts').hidden = false;
      series.merge(ans, from);
      statsNote.textContent = `Last hour, one point every ${series.interval} s, refreshed every ${STATS_MS / 1000} s.` +
        (ans.missing_nodes && ans.missing_nodes.length ? ` No figures from ${ans.missing_nodes.join(', ')} (not answering).` : '');
      view.inst = {};
      for (const i of ans.instances || []) view.inst[i.id] = i;
      drawCharts(specs, series);
      if (view.db) fill(topo, topology(view.db, view));
    });
  }

  function connectInfo(db, view) {
    const pw = db.password || '';
    const shown = view.showPw ? pw : '••••••••';
    const line = (text, real) => h('div', { class: 'conn' }, h('code', null, text),
      h('button', { type: 'button', class: 'secondary', onclick: ev => copy(real, ev.target) }, 'Copy'));
    const out = [h('h2', null, 'Connect')];
    const eps = db.endpoints || [];
    if (eps.length) {
      out.push(h('p', { class: 'muted small' }, 'Every node serves this database’s endpoint; use any of them, or a VIP or DNS name in front.'));
      eps.forEach(ep => {
        const [host, port] = splitHostPort(ep);
        const uhost = host.includes(':') ? '[' + host + ']' : host;
        out.push(h('div', { class: 'endpoint', 'data-endpoint': ep },
          line(`redis-cli -h ${host} -p ${port} -a ${shellQuote(shown)}`, `redis-cli -h ${host} -p ${port} -a ${shellQuote(pw)}`),
          line(`redis://:${view.showPw ? encodeURIComponent(pw) : shown}@${uhost}:${port}`, `redis://:${encodeURIComponent(pw)}@${uhost}:${port}`)));
      });
    } else {
      out.push(h('p', { class: 'muted' }, 'The nodes serve no endpoints (started without --proxy-ports): connect to the shard masters below directly.'));
    }
    out.push(h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'secondary', id: 'toggle-password', onclick: () => {
        view.showPw = !view.showPw;
        const card = $('#db-connect');
        if (card) fill(card, connectInfo(db, view));
      } }, view.showPw ? 'Hide password' : 'Show password')));
    return out;
  }

  async function copy(text, btn) {
    try {
      await navigator.clipboard.writeText(text);
      btn.textContent = 'Copied';
    } catch (e) {
      // No clipboard outside secure contexts: select the text instead.
      const code = btn.parentElement.querySelector('code');
      code.textContent = text;
      const r = document.createRange();
      r.selectNodeContents(code);
      const s = getSelection();
      s.removeAllRanges();
      s.addRange(r);
      btn.textContent = 'Selected';
    }
    setTimeout(() => { btn.textContent = 'Copy'; }, 1500);
  }

  function topology(db, view) {
    const out = [h('h2', null, 'Topology')];
    for (const sh of db.shards) {
      const master = sh.master;
      const rows = [master].concat(sh.replicas).map(inst => {
        const st = view.inst[inst.id] || {};
        const isMaster = inst === master;
        let lag = null;
        if (!isMaster) {
          if (st.lag_bytes != null) lag = st.lag_bytes;
          else if (master.offset > 0 && inst.offset > 0) lag = Math.max(0, master.offset - inst.offset);
        }
        const observed = inst.observed_role && inst.observed_role !== inst.role
          ? h('span', { class: 'badge warn', title: 'observed role differs from the desired one' }, 'is ' + inst.observed_role) : null;
        return h('tr', { 'data-instance': inst.id, 'data-role': inst.role },
          h('td', null, inst.role, ' ', observed),
          h('td', { class: 'mono small' }, inst.id),
          h('td', null, link('#/nodes/' + encodeURIComponent(inst.node), inst.node)),
          h('td', { class: 'mono small' }, inst.addr || '—'),
          h('td', null, badge(inst.state)),
          h('td', null, isMaster ? '—' : badge(inst.link_up ? 'up' : 'down')),
          h('td', { class: 'num' }, inst.offset ? String(inst.offset) : '—'),
          h('td', { class: 'num' }, lag == null ? '—' : fmtBytes(lag)),
          h('td', { class: 'num' }, fmtBytes(st.used_memory != null ? st.used_memory : inst.used_memory)),
          h('td', { class: 'num' }, st.ops_per_sec != null ? fmtNum(st.ops_per_sec) : '—'),
          h('td', { class: 'num' }, st.clients != null ? fmtNum(st.clients, 0) : '—'));
      });
      const msg = view.switchMsgs[sh.index];
      const force = h('input', { type: 'checkbox', class: 'force', checked: view.force[sh.index],
        onchange: ev => { view.force[sh.index] = ev.target.checked; } });
      const armed = view.armed[sh.index] > Date.now(), busy = view.busy[sh.index];
      const btn = h('button', { type: 'button', class: armed ? 'danger switchover' : 'secondary switchover', 'data-shard': sh.index,
        disabled: !sh.replicas.length || busy,
        title: sh.replicas.length ? 'Planned switchover: promote the most up-to-date replica' : 'no replicas' },
      busy ? 'Switching…' : armed ? 'Confirm switchover' : 'Switchover');
      btn.addEventListener('click', () => switchover(db.name, sh.index, view));
      out.push(h('div', { class: 'shard', 'data-shard': sh.index },
        h('div', { class: 'shard-head' }, h('strong', null, `Shard ${sh.index}`),
          h('span', { class: 'muted small' }, `slots ${sh.slot_start}–${sh.slot_end}`), h('span', { class: 'spacer' }),
          h('label', { class: 'check', title: 'end a blocked automatic failover with the best reachable replica' }, force, 'force'), btn),
        h('table', null, h('thead', null, h('tr', null, ['Role', 'Instance', 'Node', 'Address', 'State', 'Link', 'Offset', 'Lag',
          'Used memory', 'Ops/s', 'Clients'].map((t, i) => h('th', { class: i >= 6 ? 'num' : null }, t)))), h('tbody', null, rows)),
        msg ? h('div', { class: msg.error ? 'error' : 'notice', 'data-switchover-result': sh.index }, msg.text) : null));
    }
    return out;
  }

  async function switchover(name, shard, view) {
    const redraw = () => {
      const topo = $('#db-topology');
      if (topo && view.db) fill(topo, topology(view.db, view));
    };
    if (!(view.armed[shard] > Date.now())) {
      // Two clicks: the first arms the button for a few seconds.
      view.armed[shard] = Date.now() + 5000;
      setTimeout(redraw, 5050);
      redraw();
      return;
    }
    delete view.armed[shard];
    view.busy[shard] = true;
    const force = !!view.force[shard];
    redraw();
    try {
      const res = await api('POST', '/v1/dbs/' + encodeURIComponent(name) + '/failover', force ? { shard: shard, force: true } : { shard: shard });
      const r = (res || []).find(x => x.shard === shard) || (res || [])[0];
      if (r && r.error) view.switchMsgs[shard] = { error: true, text: r.error };
      else if (r) view.switchMsgs[shard] = { text: `Switched over: ${r.from} → ${r.to}, writes paused ${(r.pause_ns / 1e6).toFixed(1)} ms.` };
      else view.switchMsgs[shard] = { text: 'Switchover done.' };
    } catch (e) {
      view.switchMsgs[shard] = { error: true, text: e.message };
    }
    delete view.busy[shard];
    try {
      view.db = await api('GET', '/v1/dbs/' + encodeURIComponent(name));
    } catch (e) { /* the next refresh shows it */ }
    redraw();
  }

  function editForm(db, onSaved) {
    const err = h('div', { class: 'error', id: 'edit-error', role: 'alert', hidden: true });
    const ok = h('div', { class: 'notice', id: 'edit-ok', hidden: true });
    const initial = {
      memory: sizeInput(db.memory), replicas: String(db.replicas), persistence: db.persistence, eviction: db.eviction,
      durability: db.durability, read_from: db.read_from, owner: db.owner || '', labels: labelsText(db.labels),
    };
    const form = h('form', { id: 'edit-form', autocomplete: 'off', novalidate: true },
      h('h2', null, 'Edit ', db.name),
      h('p', { class: 'muted small' }, 'Only changed fields are sent. Memory and eviction apply live; the number of shards cannot change.'),
      h('div', { class: 'grid' },
        field('Memory per shard', h('input', { name: 'memory', value: initial.memory })),
        field('Replicas per shard', h('input', { name: 'replicas', type: 'number', min: 0, max: 5, value: initial.replicas })),
        field('Persistence', select('persistence', ['none', 'rdb', 'aof'], initial.persistence)),
        field('Eviction', select('eviction', EVICTIONS, initial.eviction)),
        field('Durability', select('durability', ['async', 'replicated'], initial.durability)),
        field('Read from', select('read_from', ['master', 'replica', 'any'], initial.read_from)),
        field('New password', h('input', { name: 'password', type: 'text', placeholder: 'unchanged', spellcheck: 'false' })),
        field('Owner', h('input', { name: 'owner', value: initial.owner })),
        field('Labels', h('input', { name: 'labels', value: initial.labels }), 'replaces all labels')),
      err, ok,
      h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'edit-submit' }, 'Save changes')));
    form.addEventListener('submit', async ev => {
      ev.preventDefault();
      showError(err, '');
      ok.hidden = true;
      const f = fields(form);
      const body = {};
      if (f.memory.value.trim() !== initial.memory) {
        const m = f.memory.value.trim();
        body.memory = /^\d+$/.test(m) ? Number(m) : m;
      }
      if (f.replicas.value !== initial.replicas) body.replicas = Number(f.replicas.value);
      for (const k of ['persistence', 'eviction', 'durability', 'read_from']) if (f[k].value !== initial[k]) body[k] = f[k].value;
      if (f.owner.value.trim() !== initial.owner) body.owner = f.owner.value.trim();
      if (f.password.value) body.password = f.password.value;
      if (f.labels.value.trim() !== initial.labels) {
        try { body.labels = parseLabels(f.labels.value); } catch (e) { showError(err, e.message); return; }
      }
      if (!Object.keys(body).length) { showError(err, 'Nothing changed.'); return; }
      const btn = $('#edit-submit');
      btn.disabled = true;
      try {
        const ndb = await api('PATCH', '/v1/dbs/' + encodeURIComponent(db.name), body);
        Object.assign(initial, {
          memory: sizeInput(ndb.memory), replicas: String(ndb.replicas), persistence: ndb.persistence, eviction: ndb.eviction,
          durability: ndb.durability, read_from: ndb.read_from, owner: ndb.owner || '', labels: labelsText(ndb.labels),
        });
        f.password.value = '';
        ok.textContent = 'Saved: ' + Object.keys(body).join(', ') + '.';
        ok.hidden = false;
        onSaved(ndb);
      } catch (e) {
        showError(err, e.message);
      } finally {
        btn.disabled = false;
      }
    });
    return form;
  }

  function deleteForm(name) {
    const err = h('div', { class: 'error', id: 'delete-error', role: 'alert', hidden: true });
    const input = h('input', { id: 'delete-confirm', placeholder: name, spellcheck: 'false', autocomplete: 'off' });
    const btn = h('button', { type: 'submit', class: 'danger', id: 'delete-submit', disabled: true }, 'Delete database');
    input.addEventListener('input', () => { btn.disabled = input.value !== name; });
    const form = h('form', { class: 'confirm', id: 'delete-form' },
      h('h2', null, 'Delete ', name),
      h('p', null, 'This stops every instance of ', h('strong', null, name), ' and deletes its data on every node. It cannot be undone.'),
      field('Type the database name to confirm', input), err,
      h('div', { class: 'actions' }, btn));
    form.addEventListener('submit', async ev => {
      ev.preventDefault();
      if (input.value !== name) return;
      btn.disabled = true;
      try {
        await api('DELETE', '/v1/dbs/' + encodeURIComponent(name));
        app.flash = `Deleted database ${name}.`;
        location.hash = '#/dbs';
      } catch (e) {
        showError(err, e.message);
        btn.disabled = false;
      }
    });
    return form;
  }

  // ---------- node page ----------

  function nodePage(root, id) {
    const enc = encodeURIComponent(id);
    const title = h('h1', null, 'Node ', id, ' ', h('span', { id: 'node-badges' }));
    const actions = h('span', { id: 'node-actions' });
    const details = h('div', { class: 'card', id: 'node-details' }, h('p', { class: 'muted' }, 'Loading…'));
    const capacity = h('div', { class: 'card', id: 'node-capacity' });
    const actionMsg = h('div', { id: 'node-action-msg' });
    const doctor = h('div', { class: 'card', id: 'node-doctor', hidden: true });
    const insts = h('div', { class: 'card', id: 'node-instances' });
    const specs = chartSpecs(false).filter(s => ['chart-ops', 'chart-memory', 'chart-clients', 'chart-latency', 'chart-net'].includes(s.id));
    const statsNote = h('p', { class: 'muted small' }, 'Aggregated over this node’s instances, last hour.');
    const charts = h('div', { class: 'card', id: 'node-charts' }, h('h2', null, 'Statistics'), statsNote, chartsCard(specs));
    root.append(h('div', { class: 'row' }, title, h('span', { class: 'spacer' }), actions), actionMsg,
      h('div', { class: 'row' }, details, capacity), doctor, insts, charts);
    const series = new Series();
    let node = null;

    const drain = async on => {
      actionMsg.replaceChildren();
      try {
        const r = await api('POST', `/v1/nodes/${enc}/${on ? 'drain' : 'undrain'}`);
        actionMsg.replaceChildren(h('div', { class: 'notice' }, r.draining
          ? `Draining ${id}: its masters are switched over and its instances moved to other nodes.`
          : `${id} is no longer draining: it takes new instances again.`));
        if (node) { node.draining = r.draining; renderActions(); }
      } catch (e) {
        actionMsg.replaceChildren(h('div', { class: 'error', id: 'node-action-error' }, e.message));
      }
    };
    const renderActions = () => {
      actions.replaceChildren(node.draining
        ? h('button', { type: 'button', id: 'undrain', onclick: () => drain(false) }, 'Undrain')
        : h('button', { type: 'button', class: 'secondary', id: 'drain', onclick: () => drain(true) }, 'Drain'));
    };

    every(REFRESH_MS, async alive => {
      const [nodes, dbs] = await Promise.all([api('GET', '/v1/nodes'), api('GET', '/v1/dbs')]);
      if (!alive()) return;
      node = nodes.find(n => n.id === id);
      if (!node) {
        details.replaceChildren(h('div', { class: 'error' }, `node ${id} not found`));
        return;
      }
      fill($('#node-badges'), nodeBadges(node));
      renderActions();
      details.replaceChildren(h('h2', null, 'Details'), kv([
        ['Address', h('code', null, node.addr)],
        ['API', h('code', null, node.http_addr)],
        ['Raft', h('code', null, node.raft_addr)],
        ['Sentinel', node.sentinel_addr ? h('code', { id: 'sentinel-addr' }, node.sentinel_addr) : null],
        ['Zone', node.zone || '—'],
        ['Status', node.status],
        ['Raft role', (node.leader ? 'leader, ' : '') + (node.voter ? 'voter' : 'non-voter')],
        ['Draining', node.draining ? 'yes' : 'no'],
        ['Last report', node.last_seen ? `${fmtTime(node.last_seen)} (${ago(node.last_seen)})` : '—'],
      ]));
      capacity.replaceChildren(h('h2', null, 'Capacity'), capacityLegend(), capacityBar(node.memory, node.allocated, node.used),
        kv([['Memory', fmtBytes(node.memory)], ['Allocated', fmtBytes(node.allocated)], ['Used', fmtBytes(node.used)],
          ['Free to allocate', fmtBytes(Math.max(0, node.memory - node.allocated))],
          ['Instances', `${node.instances} (${node.masters} masters, ${node.running} running)`]]));
      const rows = [];
      for (const db of dbs) {
        for (const sh of db.shards) {
          for (const inst of [sh.master].concat(sh.replicas)) {
            if (inst.node !== id) continue;
            rows.push(h('tr', { 'data-instance': inst.id },
              h('td', null, link('#/dbs/' + encodeURIComponent(db.name), db.name)),
              h('td', { class: 'num' }, String(sh.index)),
              h('td', null, inst.role, inst.observed_role && inst.observed_role !== inst.role ? [' ', badge('is ' + inst.observed_role, 'warn')] : null),
              h('td', { class: 'mono small' }, inst.id),
              h('td', { class: 'mono small' }, inst.addr),
              h('td', null, badge(inst.state)),
              h('td', null, inst.role === 'master' ? '—' : badge(inst.link_up ? 'up' : 'down')),
              h('td', { class: 'num' }, fmtBytes(inst.used_memory)),
              h('td', { class: 'num' }, fmtBytes(db.memory))));
          }
        }
      }
      insts.replaceChildren(h('h2', null, 'Instances'), rows.length
        ? h('table', null, h('thead', null, h('tr', null, ['Database', 'Shard', 'Role', 'Instance', 'Address', 'State', 'Link', 'Used', 'Maxmemory']
          .map((t, i) => h('th', { class: i === 1 || i >= 7 ? 'num' : null }, t)))), h('tbody', null, rows))
        : h('p', { class: 'muted' }, 'No instances on this node.'));
    });
    every(30000, async alive => {
      let d;
      try {
        d = await api('GET', `/v1/nodes/${enc}/doctor`);
      } catch (e) {
        if (e.status === 404 && alive()) { doctor.hidden = true; return; }
        if (!alive()) return;
        doctor.hidden = false;
        doctor.replaceChildren(h('h2', null, 'Host checks'), h('div', { class: 'error' }, e.message));
        return;
      }
      if (!alive()) return;
      const checks = (d && d.checks) || [];
      const warns = checks.filter(c => c.status !== 'ok').length;
      doctor.hidden = false;
      doctor.replaceChildren(h('h2', null, 'Host checks ', warns ? badge(`${warns} warning${warns > 1 ? 's' : ''}`, 'warn') : badge('all ok', 'ok')),
        h('table', { class: 'checks' }, h('thead', null, h('tr', null, ['Check', 'Status', 'Value', 'Wanted', 'Fix'].map(t => h('th', null, t)))),
          h('tbody', null, checks.map(c => h('tr', { 'data-check': c.name },
            h('td', null, c.name), h('td', null, badge(c.status, c.status === 'ok' ? 'ok' : 'warn')),
            h('td', { class: 'mono small' }, c.value == null ? '' : String(c.value)),
            h('td', { class: 'mono small' }, c.want == null ? '' : String(c.want)),
            h('td', { class: 'fix' }, c.status === 'ok' ? '' : (c.fix || '')))))));
    });
    every(STATS_MS, async alive => {
      const from = series.since();
      let ans;
      try {
        ans = await fetchStats(`/v1/nodes/${enc}/stats`, from);
      } catch (e) {
        if (!alive() || e.status === 401) return;
        if (e.status === 404) { charts.hidden = true; return; }
        statsNote.textContent = 'Statistics: ' + e.message; // e.g. the node does not answer
        return;
      }
      if (!alive()) return;
      if (!ans) { charts.hidden = true; return; }
      charts.hidden = false;
      statsNote.textContent = 'Aggregated over this node’s instances, last hour.';
      series.merge(ans, from);
      drawCharts(specs, series);
    });
  }

  // ---------- start ----------

  document.addEventListener('DOMContentLoaded', () => {
    $('#login-form').addEventListener('submit', login);
    $('#logout').addEventListener('click', () => logout(''));
    window.addEventListener('hashchange', () => { if (app.token) route(); });
    if (app.token) showApp();
    else showLogin('');
  });
})();
