// The police view: the live list of violations, a search with the API's filters
// (kind, plate, time range, page size, cursor), and the evidence of one ticket —
// its reads with times, the distance and the speed computed from them, the rule
// and its version. Hotlists are a second tab (hotlists.js).
//
// The live list comes from the WebSocket's `violations` channel (the newest 100
// at subscribe, then every new ticket); a search and every evidence view are HTTP
// calls with the officer's token, so the server audits each of them.

import { api, hasRole, query, ApiFailure } from './api.js';
import { t, name } from './i18n.js';
import { el, put, table, facts, dateTime, clock, num, fromXiamenInput, loading, failed, empty } from './ui.js';
import { signInForm } from './signin.js';
import { HotlistEditor } from './hotlists.js';

const KINDS = ['section_speed', 'point_speed', 'red_light', 'bus_lane', 'restricted_vehicle', 'hotlist', 'cloned_plate'];
const LIVE_KEPT = 500;
const SPEED_KINDS = new Set(['section_speed', 'point_speed', 'cloned_plate']);

/** A measured value or limit with the unit its kind uses; tickets without one show a dash. */
function measure(v, value) {
  if (v.measured === 0 && v.limit === 0) return '—';
  if (SPEED_KINDS.has(v.kind)) return `${num(value)} ${t('unit.kmh')}`;
  if (v.kind === 'red_light') return `${num(value, 0)} ${t('unit.ms')}`;
  return num(value);
}

export class PoliceView {
  constructor(root, live) {
    this.root = root;
    this.live = live;
    this.tab = 'violations';
    this.liveItems = [];
    this.liveError = null;
    this.subscribed = false;
    this.search = null; // { filters, items, next, loading, error }
    this.selected = null;
    this.evidence = null; // { data } | { error } | null while loading
    this.hotlists = new HotlistEditor();
    document.addEventListener('egret:auth', () => this.sync());
    document.addEventListener('egret:lang', () => this.render());
    this.sync();
  }

  /** Follows the session: subscribe to live tickets as police, forget everything otherwise. */
  sync() {
    if (hasRole('police') && !this.subscribed) {
      this.subscribed = true;
      this.liveItems = [];
      this.liveError = null;
      this.live.subscribe('violations', (message) => this.onLive(message));
      this.hotlists.load();
    } else if (!hasRole('police') && this.subscribed) {
      this.subscribed = false;
      this.live.unsubscribe('violations');
      this.liveItems = [];
      this.search = null;
      this.selected = null;
      this.evidence = null;
      this.hotlists.reset();
    }
    this.render();
  }

  onLive(message) {
    if (message.type === 'snapshot') {
      this.liveItems = [...message.items].reverse();
      this.liveError = null;
    } else if (message.type === 'delta') {
      this.liveItems = [...[...message.upserts].reverse(), ...this.liveItems].slice(0, LIVE_KEPT);
    } else if (message.type === 'error') {
      this.liveError = new ApiFailure(0, message.code, message.message);
    }
    if (!this.search) this.renderList();
  }

  render() {
    if (!hasRole('police')) {
      put(this.root, signInForm('auth.needPolice', 'police'));
      return;
    }
    const tabButton = (key, label) =>
      el('button', { type: 'button', class: this.tab === key ? 'subtab active' : 'subtab', dataset: { tab: key }, onclick: () => this.show(key) }, t(label));
    this.listTitle = el('h2', { class: 'list-title' });
    this.listNode = el('div', { class: 'violation-list' });
    this.evidenceNode = el('div', { class: 'evidence card', 'aria-live': 'polite' });
    const violations = el(
      'div',
      { class: 'police-violations split', hidden: this.tab !== 'violations' },
      el('div', { class: 'col-main' }, this.filterForm(), this.listTitle, this.listNode),
      el('div', { class: 'col-side' }, this.evidenceNode),
    );
    const hotlistNode = el('div', { class: 'police-hotlists', hidden: this.tab !== 'hotlists' });
    put(this.root, el('div', { class: 'subtabs' }, tabButton('violations', 'police.violations'), tabButton('hotlists', 'police.hotlists')), violations, hotlistNode);
    this.hotlists.mount(hotlistNode);
    this.renderList();
    this.renderEvidence();
  }

  show(tab) {
    this.tab = tab;
    this.render();
  }

  filterForm() {
    const filters = this.search?.filters ?? {};
    const kind = el('select', { name: 'kind' }, el('option', { value: '' }, t('police.anyKind')), KINDS.map((k) => el('option', { value: k, selected: filters.kind === k }, name(k))));
    const plate = el('input', { name: 'plate', type: 'search', value: filters.plate ?? '', autocomplete: 'off' });
    const since = el('input', { name: 'since', type: 'datetime-local', value: filters.since ?? '' });
    const until = el('input', { name: 'until', type: 'datetime-local', value: filters.until ?? '' });
    const limit = el('select', { name: 'limit' }, [50, 100, 500].map((n) => el('option', { value: n, selected: Number(filters.limit ?? 100) === n }, String(n))));
    const label = (key, input) => el('label', {}, el('span', {}, t(key)), input);
    const form = el(
      'form',
      { class: 'filters card' },
      label('police.kind', kind),
      label('police.plate', plate),
      label('police.since', since),
      label('police.until', until),
      label('police.limit', limit),
      el(
        'div',
        { class: 'actions' },
        el('button', { type: 'submit', class: 'primary' }, t('police.search')),
        el('button', { type: 'button', onclick: () => this.backToLive(), hidden: !this.search }, t('police.live')),
      ),
    );
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.runSearch({ kind: kind.value, plate: plate.value.trim(), since: since.value, until: until.value, limit: Number(limit.value) });
    });
    return form;
  }

  backToLive() {
    this.search = null;
    this.render();
  }

  async runSearch(filters, cursor = null) {
    const previous = cursor ? this.search.items : [];
    this.search = { filters, items: previous, next: null, loading: true, error: null };
    if (!cursor) this.render();
    else this.renderList();
    try {
      const params = { kind: filters.kind, plate: filters.plate, since_ms: fromXiamenInput(filters.since), until_ms: fromXiamenInput(filters.until), limit: filters.limit, cursor };
      const page = await api(`/api/v1/violations${query(params)}`);
      this.search = { filters, items: [...previous, ...page.violations], next: page.next_cursor, loading: false, error: null };
    } catch (error) {
      this.search = { filters, items: previous, next: null, loading: false, error };
    }
    this.renderList();
  }

  renderList() {
    if (!this.listNode) return;
    const searching = Boolean(this.search);
    const items = searching ? this.search.items : this.liveItems;
    this.listTitle.textContent = searching ? t('police.searchTitle', { n: items.length }) : t('police.liveTitle', { n: items.length });
    this.listNode.dataset.mode = searching ? 'search' : 'live';
    const parts = [];
    const error = searching ? this.search.error : this.liveError;
    if (error) parts.push(failed(error));
    if (items.length === 0 && !error) {
      if (searching && this.search.loading) parts.push(loading());
      else if (!searching && !this.liveReady()) parts.push(loading());
      else parts.push(empty(searching ? t('police.none') : t('police.noneLive')));
    }
    if (items.length > 0) {
      const rows = items.map((v) => [clock(v.ts_ms), name(v.kind), v.plate, v.location, measure(v, v.measured), measure(v, v.limit)]);
      const grid = table([t('police.time'), t('police.kind'), t('police.plate'), t('police.location'), t('police.measured'), t('police.limitCol')], rows, {
        onRow: (_, i) => this.select(items[i].violation_id),
        rowData: (i) => ({ violation: items[i].violation_id, kind: items[i].kind }),
      });
      for (const tr of grid.tBodies[0].rows) if (tr.dataset.violation === this.selected) tr.classList.add('selected');
      parts.push(el('div', { class: 'table-scroll' }, grid));
    }
    if (searching && this.search.next) {
      parts.push(el('button', { type: 'button', class: 'more', disabled: this.search.loading, onclick: () => this.runSearch(this.search.filters, this.search.next) }, t('police.more')));
    }
    put(this.listNode, parts);
  }

  liveReady() {
    return this.live.status.state === 'live';
  }

  async select(id) {
    this.selected = id;
    this.evidence = null;
    this.renderList();
    this.renderEvidence();
    try {
      const data = await api(`/api/v1/violations/${encodeURIComponent(id)}`);
      if (this.selected === id) this.evidence = { data };
    } catch (error) {
      if (this.selected === id) this.evidence = { error };
    }
    this.renderEvidence();
    if (window.matchMedia('(max-width: 760px)').matches) this.evidenceNode.scrollIntoView({ block: 'start' });
  }

  renderEvidence() {
    if (!this.evidenceNode) return;
    const head = el('h2', {}, t('ev.title'));
    if (!this.selected) return put(this.evidenceNode, head, empty(t('police.pick')));
    if (!this.evidence) return put(this.evidenceNode, head, loading());
    if (this.evidence.error) return put(this.evidenceNode, head, failed(this.evidence.error));
    const v = this.evidence.data;
    const e = v.evidence ?? {};
    this.evidenceNode.dataset.violation = v.violation_id;
    const pairs = [
      [t('police.kind'), name(v.kind)],
      [t('police.plate'), el('strong', { class: 'plate' }, v.plate)],
      [t('police.time'), dateTime(v.ts_ms)],
      [t('police.location'), v.location],
      [t('police.measured'), measure(v, v.measured)],
      [t('police.limitCol'), measure(v, v.limit)],
      [t('ev.rule'), el('span', { class: 'rule' }, t('ev.ruleLine', { rule: v.rule_id, version: v.rule_version }))],
    ];
    if (Number.isFinite(e.distance_m) && Number.isFinite(e.elapsed_ms)) {
      const margin = e.clock_margin_ms ?? 0;
      const speed = e.distance_m / ((e.elapsed_ms + margin) / 1000) * 3.6;
      pairs.push(
        [t('ev.distance'), `${e.distance_m} ${t('unit.m')}`],
        [t('ev.elapsed'), `${num(e.elapsed_ms / 1000, 1)} ${t('unit.s')}`],
        [t('ev.margin'), `${num(margin / 1000, 1)} ${t('unit.s')}`],
        [t('ev.computed'), el('span', { class: 'computed' }, t('ev.computedLine', { d: e.distance_m, e: num(e.elapsed_ms / 1000, 1), m: num(margin / 1000, 1), v: num(speed) }))],
      );
    }
    if (e.threshold !== undefined) pairs.push([t('ev.threshold'), measure(v, e.threshold)]);
    if (e.vehicle_class) pairs.push([t('ev.vehicle'), e.vehicle_class]);
    if (e.list) pairs.push([t('ev.list'), e.list]);
    if (e.reason) pairs.push([t('ev.reason'), e.reason]);
    const shown = new Set(['summary', 'sightings', 'distance_m', 'elapsed_ms', 'clock_margin_ms', 'threshold', 'vehicle_class', 'list', 'reason']);
    for (const [key, value] of Object.entries(e)) if (!shown.has(key)) pairs.push([key, typeof value === 'object' ? JSON.stringify(value) : String(value)]);
    pairs.push([t('ev.id'), el('code', {}, v.violation_id)]);
    const reads = (e.sightings ?? []).map((s) => [s.device_id, dateTime(s.device_ts_ms), dateTime(s.ts_ms), s.source ?? '—', s.image_ref ?? '—', s.value === undefined ? '—' : num(s.value)]);
    put(
      this.evidenceNode,
      head,
      e.summary ? el('p', { class: 'summary' }, e.summary) : null,
      facts(pairs),
      el('h3', {}, t('ev.reads')),
      reads.length
        ? el('div', { class: 'table-scroll' }, table([t('ev.device'), t('ev.deviceTime'), t('ev.readTime'), t('ev.source'), t('ev.image'), t('ev.value')], reads))
        : empty('—'),
    );
  }
}
