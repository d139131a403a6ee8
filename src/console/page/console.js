// The console page: polls the console's JSON (/console/api/...), draws with uPlot and Cytoscape
// (globals from /console/assets), streams events when the stack has them. Text from the stack
// (reasons, ids, event details) is only ever set as text, never parsed as HTML.
/* global uPlot, cytoscape */
'use strict';

const API = '/console/api';
const POLL_MS = 2000;
const STATUSES = ['PREPARING', 'COMMITTING', 'ABORTING', 'COMMITTED', 'ABORTED'];
const state = { info: null, selected: new URLSearchParams(location.hash.slice(1)).get('tx') || '', charts: {}, graph: null, graphKey: '', pending: null };

/** An element with attributes (on* are listeners) and children (strings become text). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'class') node.className = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) node.append(c instanceof Node ? c : String(c));
  return node;
}

async function getJson(path) {
  const res = await fetch(`${API}${path}`, { headers: { accept: 'application/json' } });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || `${res.status} ${res.statusText}`);
  return body;
}

async function postJson(path, body) {
  const res = await fetch(`${API}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const answer = await res.json().catch(() => ({}));
  return { status: res.status, body: answer };
}

function toast(text) {
  const box = document.getElementById('toast');
  const note = el('div', {}, text);
  box.append(note);
  setTimeout(() => note.remove(), 6000);
}

const shortId = (id) => el('span', { class: 'id', title: id }, id.length > 13 ? `${id.slice(0, 8)}…` : id);
const time = (iso) => (iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) + `.${String(new Date(iso).getMilliseconds()).padStart(3, '0')}` : '');
const status = (s) => el('span', { class: `status ${s}` }, s);

function setRows(tableId, rows, empty) {
  const body = document.querySelector(`#${tableId} tbody`);
  const cols = document.querySelectorAll(`#${tableId} thead th`).length;
  body.replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', { colspan: cols, class: 'muted' }, empty))]));
}

// ------------------------------------------------------------------ charts

function chart(id, series, yLabel) {
  const box = document.getElementById(id);
  const opts = {
    width: Math.max(200, box.clientWidth),
    height: box.clientWidth < 500 ? 180 : 220,
    scales: { x: { time: true } },
    axes: [{}, { label: yLabel, size: 60 }],
    // Latency has a value only where something was decided: its points show, so one is not lost.
    series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, spanGaps: s.spanGaps ?? false, points: { show: s.spanGaps ?? false, size: 5, fill: s.color } }))],
    legend: { live: false },
  };
  const u = new uPlot(opts, [[], ...series.map(() => [])], box);
  new ResizeObserver(() => u.setSize({ width: Math.max(200, box.clientWidth), height: box.clientWidth < 500 ? 180 : 220 })).observe(box);
  return u;
}

function drawCharts(o) {
  state.charts.throughput ??= chart('chart-throughput', [{ label: 'started', color: '#0969da' }, { label: 'decided', color: '#1a7f37' }], 'tx/s');
  state.charts.latency ??= chart('chart-latency', [{ label: 'p50', color: '#8250df', spanGaps: true }, { label: 'p99', color: '#cf222e', spanGaps: true }], 'ms');
  const s = o.series;
  state.charts.throughput.setData([s.t, s.started, s.decided]);
  state.charts.latency.setData([s.t, s.p50, s.p99]);
}

// ------------------------------------------------------------------ overview

function drawCounts(o) {
  const tiles = STATUSES.map((s) => el('div', { class: 'tile' }, el('b', { class: s }, o.counts[s]), el('span', {}, s.toLowerCase())));
  tiles.push(el('div', { class: 'tile' }, el('b', {}, o.open.total), el('span', {}, 'open now')));
  tiles.push(el('div', { class: 'tile' }, el('b', { class: o.inDoubt.length ? 'ABORTED' : '' }, o.inDoubt.length), el('span', {}, 'in doubt')));
  const dead = o.queues.filter((q) => q.kind === 'dead-letter').reduce((n, q) => n + q.visible + q.inFlight, 0);
  tiles.push(el('div', { class: 'tile' }, el('b', { class: dead ? 'ABORTED' : '' }, dead), el('span', {}, 'dead letters')));
  document.getElementById('counts').replaceChildren(...tiles);
  document.getElementById('window-note').textContent = `(created in the last ${Math.round(o.windowMs / 60000)} min${o.sampled ? ', sampled: more than one read could page' : ''})`;
}

function drawInDoubt(o) {
  setRows(
    'in-doubt',
    o.inDoubt.map((d) =>
      el(
        'tr',
        {},
        el('td', {}, el('a', { href: `#tx=${d.txId}`, onclick: () => select(d.txId) }, shortId(d.txId))),
        el('td', {}, d.participant, d.parkedWith === d.participant ? el('span', { class: 'muted' }, ' (parked)') : ''),
        el('td', {}, status(d.decision || d.status)),
        el('td', {}, time(d.since)),
        el('td', {}, el('button', { class: 'danger', onclick: () => openRelease(d) }, 'Release…')),
      ),
    ),
    'No participant is in doubt.',
  );
}

function drawDeadlocks(o) {
  setRows(
    'deadlocks',
    o.deadlocks.map((d) =>
      el('tr', {}, el('td', {}, time(d.createdAt)), el('td', {}, shortId(d.victim)), el('td', {}, d.cycle.map((c) => c.slice(0, 8)).join(' → ')), el('td', {}, d.trigger)),
    ),
    'No deadlock resolved recently.',
  );
}

function drawLocks(o) {
  setRows(
    'locks',
    o.locks.map((l) =>
      el(
        'tr',
        {},
        el('td', {}, el('code', {}, l.resource)),
        el('td', {}, l.mode || ''),
        el('td', {}, l.owners.map((w) => `${w.kind === 'tx' ? w.owner.slice(0, 8) : w.owner} (${w.scopes.join(', ')})`).join('; ')),
        el('td', {}, l.waiters.map((w) => (w.kind === 'tx' ? w.owner.slice(0, 8) : w.owner)).join(', ')),
        el('td', {}, l.token),
      ),
    ),
    'No lock held by an open transaction, and nobody waiting.',
  );
}

function drawGraph(o) {
  const { nodes, edges } = o.waitFor;
  const key = JSON.stringify(o.waitFor);
  document.getElementById('graph-note').textContent = nodes.length
    ? `${nodes.length} waiting or holding, ${edges.length} edges (an arrow points from a waiter to the holder it waits for).`
    : 'Nobody waits for a lock.';
  if (key === state.graphKey) return;
  state.graphKey = key;
  const elements = [
    ...nodes.map((n) => ({ data: { id: n.id, label: n.label, kind: n.kind } })),
    ...edges.map((e, i) => ({ data: { id: `e${i}`, source: e.waiter, target: e.holder, label: e.resource } })),
  ];
  if (!state.graph) {
    state.graph = cytoscape({
      container: document.getElementById('graph'),
      elements,
      wheelSensitivity: 0.3,
      style: [
        { selector: 'node', style: { label: 'data(label)', 'background-color': '#0969da', color: '#1b1f24', 'font-size': 11, 'text-valign': 'bottom', 'text-margin-y': 4 } },
        { selector: 'node[kind = "owner"]', style: { 'background-color': '#9a6700', shape: 'round-rectangle' } },
        { selector: 'edge', style: { width: 2, 'line-color': '#8c959f', 'target-arrow-color': '#8c959f', 'target-arrow-shape': 'triangle', 'curve-style': 'bezier', label: 'data(label)', 'font-size': 9, color: '#57606a', 'text-rotation': 'autorotate' } },
      ],
      layout: { name: 'circle' },
    });
  } else {
    state.graph.elements().remove();
    state.graph.add(elements);
  }
  state.graph.layout({ name: nodes.length > 12 ? 'cose' : 'circle', animate: false, padding: 20 }).run();
}

function drawQueues(o) {
  setRows(
    'queues',
    o.queues.map((q) =>
      el(
        'tr',
        {},
        el('td', {}, el('code', {}, q.name)),
        el('td', { class: q.kind === 'dead-letter' && q.visible ? 'ABORTED' : '' }, q.visible),
        el('td', {}, q.inFlight),
        el(
          'td',
          {},
          q.kind === 'dead-letter' && q.visible + q.inFlight > 0
            ? [el('button', { onclick: () => showDeadLetters(q) }, 'Show'), ' ', el('button', { class: 'danger', onclick: () => redrive(q) }, 'Redrive')]
            : '',
        ),
      ),
    ),
    'No queues.',
  );
}

async function showDeadLetters(q) {
  const box = document.getElementById('dead-letters');
  try {
    const { items } = await getJson(`/dead-letters?queue=${encodeURIComponent(q.url)}`);
    box.replaceChildren(
      el('h3', {}, `${q.name}: ${items.length ? 'the first messages' : 'empty'}`),
      ...items.map((m) => el('div', { class: 'dead-letter' }, el('div', { class: 'muted' }, `${time(m.sentAt)} · received ${m.receives}× ${m.reason ? `· ${m.reason}` : ''}`), el('code', {}, m.body))),
    );
  } catch (err) {
    toast(`Could not read ${q.name}: ${err.message}`);
  }
}

async function redrive(q) {
  if (!confirm(`Move every message of ${q.name} back to the queue it came from?`)) return;
  const answer = await postJson('/redrive', { queue: q.url });
  if (answer.status !== 200) return toast(`Redrive failed: ${answer.body.error || answer.status}`);
  toast(`${q.name}: ${answer.body.moved} moved back${answer.body.left ? `, ${answer.body.left} left (no source found)` : ''}`);
  document.getElementById('dead-letters').replaceChildren();
  refresh();
}

// ------------------------------------------------------------------ transactions

function filters() {
  const form = document.getElementById('filters');
  const q = new URLSearchParams();
  for (const name of ['status', 'participant', 'id']) {
    const v = form.elements[name].value.trim();
    if (v) q.set(name, v);
  }
  return q.toString();
}

async function drawRecent() {
  const { items } = await getJson(`/transactions?${filters()}`);
  setRows(
    'recent',
    items.map((t) =>
      el(
        'tr',
        { 'data-id': t.txId, class: t.txId === state.selected ? 'selected' : '', onclick: () => select(t.txId) },
        el('td', {}, shortId(t.txId)),
        el('td', {}, status(t.status)),
        el('td', {}, time(t.createdAt)),
        el('td', {}, t.participants.map((p) => p.service).join(', ')),
        el('td', { title: t.decision?.reason || '' }, t.decision ? status(t.decision.outcome) : ''),
      ),
    ),
    'No transaction matches.',
  );
}

function select(txId) {
  state.selected = txId;
  history.replaceState(null, '', `#tx=${encodeURIComponent(txId)}`);
  for (const row of document.querySelectorAll('#recent tbody tr[data-id]')) row.classList.toggle('selected', row.dataset.id === txId);
  drawTx();
}

/** created → each vote → decision → each acknowledgement (and in doubt, release) → finished, in time order. */
function timeline(v) {
  const steps = [{ at: v.createdAt, text: `created with ${v.participants.map((p) => p.service).join(', ')}` }];
  for (const p of v.participants) {
    if (p.votedAt) steps.push({ at: p.votedAt, text: [`${p.service} voted `, status(p.vote), p.reason ? `: ${p.reason}` : ''] });
    if (p.inDoubtSince) steps.push({ at: p.inDoubtSince, text: `${p.service} found in doubt` });
    if (p.ackedAt) steps.push({ at: p.ackedAt, text: [`${p.service} acknowledged `, status(p.ack)] });
  }
  for (const r of v.releases || []) steps.push({ at: r.at, text: `${r.participant} released by ${r.operator}: ${r.reason}` });
  if (v.decision) steps.push({ at: v.decision.at || v.decidedAt, text: ['decided ', status(v.decision.outcome), v.decision.reason ? `: ${v.decision.reason}` : ''] });
  if (v.finishedAt) steps.push({ at: v.finishedAt, text: ['finished ', status(v.status)] });
  const t0 = Date.parse(v.createdAt);
  steps.sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
  return el(
    'ol',
    { class: 'timeline' },
    steps.map((s) => el('li', {}, el('span', { class: 'offset' }, `+${(Date.parse(s.at) - t0).toLocaleString()} ms`), el('time', { datetime: s.at }, time(s.at)), ...[s.text].flat())),
  );
}

async function drawTx() {
  const box = document.getElementById('tx');
  if (!state.selected) return;
  let v;
  try {
    v = await getJson(`/transactions/${encodeURIComponent(state.selected)}`);
  } catch (err) {
    box.replaceChildren(el('p', { class: 'muted' }, `${state.selected}: ${err.message}`));
    return;
  }
  if (v.txId !== state.selected) return;
  const reason = el('input', { id: 'abort-reason', placeholder: 'reason (optional)', maxlength: 200 });
  const kept = document.getElementById('abort-reason');
  if (kept && box.dataset.id === v.txId) reason.value = kept.value;
  box.dataset.id = v.txId;
  box.replaceChildren(
    el('p', {}, el('code', { id: 'tx-id' }, v.txId), ' ', status(v.status), v.parkedWith ? el('span', { class: 'muted' }, ` · parked with ${v.parkedWith}`) : ''),
    timeline(v),
    v.status === 'PREPARING'
      ? el('div', { class: 'actions' }, reason, el('button', { id: 'abort', class: 'danger', onclick: () => abort(v.txId) }, 'Abort transaction'))
      : '',
    // Phase two still waits for these: an operator may release one that is retired for good.
    v.awaitingAck.length
      ? el('div', { class: 'actions' }, el('span', { class: 'muted' }, 'Waiting for acknowledgements from:'), ...v.awaitingAck.map((service) => el('button', { class: 'danger', 'data-release': service, onclick: () => openRelease({ txId: v.txId, participant: service }) }, `Release ${service}…`)))
      : '',
  );
}

async function abort(txId) {
  const reason = document.getElementById('abort-reason')?.value.trim() || 'aborted from the console';
  const button = document.getElementById('abort');
  if (button) button.disabled = true;
  const answer = await postJson(`/transactions/${encodeURIComponent(txId)}/abort`, { reason });
  if (answer.status === 202) toast(`Aborted ${txId.slice(0, 8)}: ABORT is the decision.`);
  else if (answer.status === 409) toast(`Not aborted: ${answer.body.error?.message || 'it can only commit'}`);
  else toast(`Abort answered ${answer.status}: ${answer.body.error?.message || answer.body.error || ''}`);
  refresh();
}

let releasing = null;
function openRelease(d) {
  releasing = d;
  const dialog = document.getElementById('release-dialog');
  document.getElementById('release-what').textContent = `${d.participant} from transaction ${d.txId}`;
  const form = document.getElementById('release-form');
  form.elements.operator.value = localStorage.getItem('dtc-operator') || '';
  form.elements.reason.value = '';
  dialog.showModal();
}

async function confirmRelease() {
  const form = document.getElementById('release-form');
  const operator = form.elements.operator.value.trim();
  const reason = form.elements.reason.value.trim();
  if (!releasing || !operator || !reason) return;
  localStorage.setItem('dtc-operator', operator);
  const answer = await postJson(`/transactions/${encodeURIComponent(releasing.txId)}/release`, { participant: releasing.participant, operator, reason });
  if (answer.status === 200) toast(`Released ${releasing.participant} from ${releasing.txId.slice(0, 8)}.`);
  else toast(`Release answered ${answer.status}: ${answer.body.error?.message || answer.body.error || ''}`);
  releasing = null;
  refresh();
}

// ------------------------------------------------------------------ events

function startEvents() {
  const note = document.getElementById('events-note');
  if (!state.info.events) {
    note.textContent = 'Events are streamed from the embedded stack only; on AWS, a rule on the event bus (source "dtc") delivers them.';
    return;
  }
  const list = document.getElementById('events');
  const source = new EventSource(`${API}/events`);
  source.addEventListener('dtc', (message) => {
    const e = JSON.parse(message.data);
    const d = e.detail || {};
    const what = [d.txId ? shortId(d.txId) : '', d.participant ? ` ${d.participant}` : '', d.outcome || d.status ? ` ${d.outcome || d.status}` : '', d.reason ? `: ${d.reason}` : ''];
    list.prepend(el('li', {}, el('time', { class: 'muted' }, `${time(e.time)} `), el('b', {}, e['detail-type']), ' ', ...what));
    while (list.children.length > 100) list.lastChild.remove();
    note.textContent = '';
  });
  source.onerror = () => (note.textContent = 'Event stream interrupted; reconnecting…');
  note.textContent = 'Waiting for events…';
}

// ------------------------------------------------------------------ loop

async function refresh() {
  if (state.pending) return state.pending;
  state.pending = (async () => {
    try {
      const o = await getJson('/overview');
      drawCounts(o);
      drawCharts(o);
      drawInDoubt(o);
      drawDeadlocks(o);
      drawLocks(o);
      drawGraph(o);
      drawQueues(o);
      await drawRecent();
      await drawTx();
      document.getElementById('updated').textContent = `updated ${time(o.now)}`;
    } catch (err) {
      document.getElementById('updated').textContent = `not updated: ${err.message}`;
    } finally {
      state.pending = null;
    }
  })();
  return state.pending;
}

async function main() {
  state.info = await getJson('/info');
  document.getElementById('target').textContent = `${state.info.target} · ${state.info.apiUrl}`;
  const form = document.getElementById('filters');
  form.elements.status.append(...STATUSES.map((s) => el('option', { value: s }, s)));
  form.elements.participant.append(...state.info.services.map((s) => el('option', { value: s }, s)));
  form.addEventListener('input', () => drawRecent().catch((err) => toast(err.message)));
  form.addEventListener('submit', (e) => e.preventDefault());
  document.getElementById('release-form').addEventListener('submit', (e) => {
    if (e.submitter?.value === 'release') confirmRelease();
  });
  startEvents();
  await refresh();
  setInterval(refresh, POLL_MS);
}

main().catch((err) => {
  document.getElementById('updated').textContent = `console failed to start: ${err.message}`;
});
