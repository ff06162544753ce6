// The dispatcher view: a headway ladder per route and direction (the stops on a
// line, each bus placed where it is, coloured by its last measured headway), the
// intercity routes Xiamen–Zhangzhou and Xiamen–Quanzhou first, then BRT and city
// buses; the alerts for bunching, gaps and trips that never ran; and the next
// arrivals at a stop clicked on a ladder.
//
// Headways need a dispatcher (or admin) token and have no WebSocket channel, so
// every route's /api/v1/routes/{id}/headways is fetched again every 15 seconds
// while the view is open. A bus is placed on the ladder by projecting its GPS
// position onto the line through its direction's stops, so its place between
// two stops matches the map.

import { api, hasRole } from './api.js';
import { t, name } from './i18n.js';
import { el, svg, put, clock, num, loading, failed, empty } from './ui.js';
import { signInForm } from './signin.js';

const REFRESH_MS = 15000;
const ALERTS_SHOWN = 20;
/** Bunching and gaps older than this are history, not alerts; a missing trip stays longer. */
const ALERT_WINDOW_MS = 30 * 60 * 1000;
const GHOST_WINDOW_MS = 60 * 60 * 1000;
const LADDER = { width: 1000, left: 24, right: 976, line: 36, grace: 24 };

/** Stops as metres along the line through them, and a projector of positions onto it. */
function stopLine(stops) {
  const lat0 = stops[0]?.lat ?? 0;
  const k = Math.cos((lat0 * Math.PI) / 180) * 111320;
  const points = stops.map((s) => [s.lon * k, s.lat * 111320]);
  const along = [0];
  for (let i = 1; i < points.length; i += 1) along.push(along[i - 1] + Math.hypot(points[i][0] - points[i - 1][0], points[i][1] - points[i - 1][1]));
  const project = (lat, lon) => {
    const p = [lon * k, lat * 111320];
    let best = { d: Infinity, at: 0 };
    for (let i = 1; i < points.length; i += 1) {
      const [a, b] = [points[i - 1], points[i]];
      const [dx, dy] = [b[0] - a[0], b[1] - a[1]];
      const len2 = dx * dx + dy * dy || 1;
      const f = Math.min(1, Math.max(0, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2));
      const d = Math.hypot(a[0] + f * dx - p[0], a[1] + f * dy - p[1]);
      if (d < best.d) best = { d, at: along[i - 1] + f * (along[i] - along[i - 1]) };
    }
    return best.at;
  };
  return { along, total: along[along.length - 1] || 1, project };
}

export class DispatchView {
  /** `routes`: route_id → route of /api/v1/routes. */
  constructor(root, routes) {
    this.root = root;
    this.routes = routes;
    this.headways = new Map(); // route_id → { data } | { error }
    this.updatedAt = null;
    this.stop = null; // { stop_id, name, data | error }
    this.active = false;
    this.timer = null;
    document.addEventListener('egret:auth', () => this.sync());
    document.addEventListener('egret:lang', () => this.render());
  }

  setActive(active) {
    this.active = active;
    this.sync();
  }

  sync() {
    clearInterval(this.timer);
    this.timer = null;
    if (!hasRole('dispatcher', 'admin')) {
      this.headways.clear();
      this.stop = null;
    } else if (this.active) {
      this.refresh();
      this.timer = setInterval(() => this.refresh(), REFRESH_MS);
    }
    this.render();
  }

  async refresh() {
    const ids = [...this.routes.keys()];
    const answers = await Promise.all(
      ids.map((id) => api(`/api/v1/routes/${encodeURIComponent(id)}/headways`).then((data) => ({ data }), (error) => ({ error }))),
    );
    if (!hasRole('dispatcher', 'admin')) return;
    ids.forEach((id, i) => this.headways.set(id, answers[i]));
    this.updatedAt = this.dataNow();
    this.render();
  }

  /** The newest bus report: the data's own clock, which runs ahead of the wall's when the demo is sped up. */
  dataNow() {
    let newest = 0;
    for (const answer of this.headways.values()) for (const bus of answer.data?.buses ?? []) newest = Math.max(newest, bus.ts_ms);
    return newest || Date.now();
  }

  render() {
    if (!hasRole('dispatcher', 'admin')) {
      put(this.root, signInForm('auth.needDispatcher', 'dispatcher'));
      return;
    }
    const groups = [
      ['intercity', 'disp.intercity'],
      ['brt', 'disp.brt'],
      ['bus', 'disp.city'],
    ];
    const main = el('div', { class: 'col-main routes' });
    if (this.headways.size === 0) main.append(loading());
    for (const [kind, label] of groups) {
      const routes = [...this.routes.values()].filter((r) => (kind === 'bus' ? !['intercity', 'brt'].includes(r.kind) : r.kind === kind));
      if (routes.length === 0 || this.headways.size === 0) continue;
      main.append(el('h2', { class: 'group', dataset: { group: kind } }, t(label)));
      if (kind === 'intercity') {
        // Xiamen–Zhangzhou, Xiamen–Quanzhou: one sub-heading per pair of cities.
        const pairs = new Map();
        for (const r of routes) {
          const pair = r.cities.map((c) => name(c)).join('–');
          pairs.set(pair, [...(pairs.get(pair) ?? []), r]);
        }
        for (const [pair, members] of pairs) main.append(el('h3', { class: 'pair' }, pair), ...members.map((r) => this.routeCard(r)));
      } else {
        main.append(...routes.map((r) => this.routeCard(r)));
      }
    }
    const side = el('div', { class: 'col-side' }, this.alertsCard(), this.arrivalsCard());
    const updated = this.updatedAt ? el('p', { class: 'muted updated' }, t('disp.updated', { time: clock(this.updatedAt) })) : null;
    const key = (status, label) => el('span', { class: 'key' }, el('span', { class: `key-dot status-${status}` }), t(label));
    const legend = el('p', { class: 'ladder-legend' }, key('ok', 'disp.statusOk'), key('bunched', 'disp.bunched'), key('gap', 'disp.gap'), key('unknown', 'disp.statusUnknown'));
    put(this.root, updated, legend, el('div', { class: 'dispatch split' }, main, side));
  }

  routeCard(route) {
    const answer = this.headways.get(route.route_id);
    const card = el('section', { class: 'card route', dataset: { route: route.route_id, kind: route.kind } }, el('h4', {}, route.name, ' ', el('code', {}, route.route_id)));
    if (!answer) return card;
    if (answer.error) {
      card.append(failed(answer.error));
      return card;
    }
    const { buses, headways, ghost_trips: ghosts } = answer.data;
    // Counted over the same recent window as the alerts.
    const now = this.dataNow();
    const count = (status) => headways.filter((h) => h.status === status && h.arrival_ms >= now - ALERT_WINDOW_MS).length;
    const missing = ghosts.filter((g) => g.scheduled_ms >= now - GHOST_WINDOW_MS).length;
    card.append(el('p', { class: 'muted' }, t('disp.busesLine', { n: buses.length, b: count('bunched'), g: count('gap'), x: missing })));
    if (buses.length === 0) card.append(empty(t('disp.noBuses')));
    for (const direction of route.directions) card.append(this.ladder(route, direction, buses, headways));
    return card;
  }

  /** One direction's ladder as SVG: stops as ticks, buses as dots with their last headway. */
  ladder(route, direction, buses, headways) {
    const stops = direction.stops;
    const line = stopLine(stops);
    const x = (metres) => LADDER.left + ((LADDER.right - LADDER.left) * metres) / line.total;
    const picture = svg('svg', { class: 'ladder', viewBox: `0 0 ${LADDER.width} 64`, role: 'img', 'aria-label': t('disp.towards', { headsign: direction.headsign }) });
    picture.append(svg('line', { class: 'ladder-line', x1: LADDER.left, x2: LADDER.right, y1: LADDER.line, y2: LADDER.line }));
    const stopXs = stops.map((_, i) => x(line.along[i]));
    stops.forEach((stop, i) => {
      const tick = svg('circle', { class: 'ladder-stop', cx: stopXs[i], cy: LADDER.line, r: 6, tabindex: 0, 'data-stop': stop.stop_id }, svg('title', {}, stop.name));
      tick.addEventListener('keydown', (e) => e.key === 'Enter' && this.showArrivals(stop));
      picture.append(tick);
    });
    // A click on the ladder's line opens the stop nearest to it: a bus standing at
    // a stop is drawn over its tick and must not swallow the click meant for the
    // stop, and a line is an easier target for a finger than a tick. A click on a
    // tick itself (or one without a position, as assistive tools send) is that tick's.
    picture.addEventListener('click', (event) => {
      const onTick = stops.find((s) => s.stop_id === event.target.closest?.('.ladder-stop')?.dataset.stop);
      if (onTick) return this.showArrivals(onTick);
      const at = new DOMPoint(event.clientX, event.clientY).matrixTransform(picture.getScreenCTM().inverse()).x;
      // The picture is centred in its box: a click in the margins beside it is no stop's.
      if (at < LADDER.left - LADDER.grace || at > LADDER.right + LADDER.grace) return undefined;
      const nearest = stopXs.reduce((best, sx, i) => (Math.abs(sx - at) < Math.abs(stopXs[best] - at) ? i : best), 0);
      return stops[nearest] && this.showArrivals(stops[nearest]);
    });
    const ends = [[stops[0], 'start', LADDER.left], [stops[stops.length - 1], 'end', LADDER.right]];
    for (const [stop, anchor, at] of ends) if (stop) picture.append(svg('text', { class: 'ladder-label', x: at, y: 60, 'text-anchor': anchor }, stop.name));
    const latest = new Map();
    for (const h of headways) if (h.direction_id === direction.direction_id && (!latest.has(h.bus_id) || latest.get(h.bus_id).arrival_ms < h.arrival_ms)) latest.set(h.bus_id, h);
    for (const bus of buses.filter((b) => b.direction_id === direction.direction_id)) {
      const h = latest.get(bus.bus_id);
      const cx = x(line.project(bus.lat, bus.lon));
      const status = h?.status ?? 'unknown';
      picture.append(
        svg('circle', { class: `ladder-bus status-${status}`, cx, cy: LADDER.line, r: 8, 'data-bus': bus.bus_id }, svg('title', {}, `${bus.bus_id}${h ? ` · ${t('disp.headway', { h: num(h.headway_s / 60) })}` : ''}`)),
      );
      if (h) picture.append(svg('text', { class: `ladder-headway status-${status}`, x: cx, y: 18, 'text-anchor': 'middle' }, num(h.headway_s / 60)));
    }
    return el('div', { class: 'direction', dataset: { direction: direction.direction_id } }, el('p', { class: 'towards' }, t('disp.towards', { headsign: direction.headsign })), picture);
  }

  alertsCard() {
    const card = el('div', { class: 'card alerts' }, el('h2', {}, t('disp.alerts'), el('span', { class: 'muted' }, ` · ${t('disp.recent', { min: ALERT_WINDOW_MS / 60000 })}`)));
    const items = [];
    const now = this.dataNow();
    for (const [routeId, answer] of this.headways) {
      const route = this.routes.get(routeId);
      for (const h of answer.data?.headways ?? []) if (h.status !== 'ok' && h.arrival_ms >= now - ALERT_WINDOW_MS) items.push({ at: h.arrival_ms, kind: h.status, route, h });
      for (const g of answer.data?.ghost_trips ?? []) if (g.scheduled_ms >= now - GHOST_WINDOW_MS) items.push({ at: g.scheduled_ms, kind: 'ghost', route, g });
    }
    items.sort((a, b) => b.at - a.at);
    if (this.headways.size === 0) card.append(loading());
    else if (items.length === 0) card.append(empty(t('disp.noAlerts')));
    else {
      const stopName = (route, id) => route.directions.flatMap((d) => d.stops).find((s) => s.stop_id === id)?.name ?? id;
      card.append(
        el(
          'ul',
          { class: 'alert-list' },
          items.slice(0, ALERTS_SHOWN).map((a) => {
            const badge = el('span', { class: `badge status-${a.kind}` }, t(a.kind === 'ghost' ? 'disp.ghost' : a.kind === 'bunched' ? 'disp.bunched' : 'disp.gap'));
            const text = a.kind === 'ghost'
              ? t('disp.ghostLine', { route: a.route.name, dir: a.g.direction_id, trip: a.g.trip_id, time: clock(a.g.scheduled_ms) })
              : t('disp.alertLine', { route: a.route.name, dir: a.h.direction_id, bus: a.h.bus_id, prev: a.h.previous_bus_id, stop: stopName(a.route, a.h.stop_id), h: num(a.h.headway_s / 60), s: num(a.h.scheduled_headway_s / 60) });
            return el('li', { dataset: { kind: a.kind, route: a.route.route_id } }, badge, ' ', el('span', { class: 'muted' }, clock(a.at)), ' ', text);
          }),
        ),
      );
    }
    return card;
  }

  async showArrivals(stop) {
    this.stop = { stop_id: stop.stop_id, name: stop.name };
    this.render();
    try {
      const data = await api(`/api/v1/stops/${encodeURIComponent(stop.stop_id)}/arrivals`);
      if (this.stop?.stop_id === stop.stop_id) this.stop = { ...this.stop, data };
    } catch (error) {
      if (this.stop?.stop_id === stop.stop_id) this.stop = { ...this.stop, error };
    }
    this.render();
    if (window.matchMedia('(max-width: 760px)').matches) this.root.querySelector('.arrivals')?.scrollIntoView({ block: 'start' });
  }

  arrivalsCard() {
    const card = el('div', { class: 'card arrivals', dataset: { stop: this.stop?.stop_id ?? '' } }, el('h2', {}, t('disp.arrivals'), this.stop ? ` · ${this.stop.name}` : ''));
    if (!this.stop) card.append(empty(t('disp.pickStop')));
    else if (this.stop.error) card.append(failed(this.stop.error));
    else if (!this.stop.data) card.append(loading());
    else if (this.stop.data.arrivals.length === 0) card.append(empty(t('disp.noArrivals', { stop: this.stop.name })));
    else {
      const now = this.dataNow();
      const minutes = (ms) => Math.max(0, Math.round((ms - now) / 60000));
      card.append(
        el(
          'ul',
          { class: 'arrival-list' },
          this.stop.data.arrivals.map((a) =>
            el(
              'li',
              { dataset: { bus: a.bus_id } },
              el('strong', {}, this.routes.get(a.route_id)?.name ?? a.route_id),
              ` · ${a.bus_id} · ${clock(a.predicted_ms)} · `,
              t('disp.arrivalLine', { min: minutes(a.predicted_ms), early: minutes(a.predicted_ms - a.early_ms), late: minutes(a.predicted_ms + a.late_ms) }),
            ),
          ),
        ),
      );
    }
    return card;
  }
}
