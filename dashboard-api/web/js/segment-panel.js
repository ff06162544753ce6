// The side panel of one road segment: what the network says about it, its live
// window from the WebSocket, and a uPlot chart of its speed over the last hour
// from /api/v1/segments/{id}/history (closed windows only, so the chart does not
// wobble as late reads revise the current minute). The chart is fetched again
// every 30 seconds while the panel is open.

import { api } from './api.js';
import { t, name } from './i18n.js';
import { el, put, facts, num, clock, loading, failed, empty } from './ui.js';

const HISTORY_SPAN_MS = 60 * 60 * 1000;
const REFRESH_MS = 30000;

export class SegmentPanel {
  constructor(node, trafficMap, { onClose }) {
    this.node = node;
    this.trafficMap = trafficMap;
    this.onClose = onClose;
    this.id = null;
    this.states = new Map();
    this.asOfMs = Date.now();
    this.history = null; // { windows } | { error } | null while loading
    this.chart = null;
    this.request = 0;
    setInterval(() => {
      if (this.id) this.fetchHistory();
    }, REFRESH_MS);
    new ResizeObserver(() => this.resizeChart()).observe(node);
  }

  show(id) {
    this.id = id;
    this.history = null;
    this.node.hidden = false;
    this.render();
    this.fetchHistory();
  }

  close() {
    this.id = null;
    this.node.hidden = true;
    this.destroyChart();
    put(this.node);
    this.onClose();
  }

  /** New live states: re-render only when the shown segment changed. */
  update(states, changed, asOfMs) {
    this.states = states;
    if (Number.isFinite(asOfMs)) this.asOfMs = asOfMs;
    if (this.id && (!changed || changed.has(this.id))) this.renderFacts();
  }

  async fetchHistory() {
    const id = this.id;
    const ticket = ++this.request;
    try {
      const answer = await api(`/api/v1/segments/${encodeURIComponent(id)}/history?from_ms=${this.asOfMs - HISTORY_SPAN_MS}`);
      if (ticket !== this.request || id !== this.id) return;
      this.history = { windows: answer.windows.filter((w) => w.is_final) };
    } catch (error) {
      if (ticket !== this.request || id !== this.id) return;
      this.history = { error };
    }
    this.renderChart();
  }

  render() {
    if (!this.id) return;
    const feature = this.trafficMap.feature(this.id);
    const title = el('h2', {}, t('seg.title', { id: this.id }));
    const close = el('button', { class: 'close', type: 'button', title: t('seg.close'), 'aria-label': t('seg.close'), onclick: () => this.close() }, '×');
    this.factsNode = el('div', { class: 'seg-facts' });
    this.chartNode = el('div', { class: 'chart', dataset: { segment: this.id } });
    const props = feature?.properties ?? {};
    put(
      this.node,
      el('div', { class: 'panel-head' }, title, close),
      el('p', { class: 'road-name' }, props.name ?? ''),
      facts([
        [t('seg.class'), name(props.road_class)],
        [t('seg.city'), name(props.city)],
        [t('seg.limit'), `${props.speed_limit_kmh} ${t('unit.kmh')}`],
        [t('seg.freeFlow'), `${num(props.free_flow_kmh)} ${t('unit.kmh')}`],
      ]),
      this.factsNode,
      el('h3', {}, t('seg.chart')),
      this.chartNode,
    );
    this.renderFacts();
    this.renderChart();
  }

  renderFacts() {
    if (!this.factsNode) return;
    const s = this.states.get(this.id);
    if (!s) {
      put(this.factsNode, empty(t('seg.noWindow')));
      return;
    }
    const kmh = (x) => (Number.isFinite(x) ? `${num(x)} ${t('unit.kmh')}` : '—');
    put(
      this.factsNode,
      facts([
        [t('seg.mean'), kmh(s.mean_speed_kmh)],
        [t('seg.median'), kmh(s.median_speed_kmh)],
        [t('seg.median5'), kmh(s.median_5min_kmh)],
        [t('seg.travel'), `${num(s.travel_time_s)} ${t('unit.s')}`],
        [t('seg.samples'), String(s.sample_count)],
        [t('seg.jam'), num(s.jam_factor)],
        [t('seg.confidence'), num(s.confidence, 2)],
        [t('seg.window'), `${clock(s.window_start_ms)}–${clock(s.window_end_ms)} (${s.is_final ? t('seg.final') : t('seg.provisional')})`],
      ]),
    );
  }

  destroyChart() {
    if (this.chart) this.chart.destroy();
    this.chart = null;
  }

  renderChart() {
    if (!this.chartNode) return;
    this.destroyChart();
    if (!this.history) {
      put(this.chartNode, loading());
      return;
    }
    if (this.history.error) {
      put(this.chartNode, failed(this.history.error));
      return;
    }
    const windows = this.history.windows;
    if (windows.length === 0) {
      put(this.chartNode, empty(t('seg.chartEmpty')));
      return;
    }
    const props = this.trafficMap.feature(this.id)?.properties ?? {};
    const xs = windows.map((w) => w.window_end_ms / 1000);
    const data = [xs, windows.map((w) => w.mean_speed_kmh), windows.map((w) => w.median_5min_kmh ?? null), xs.map(() => props.speed_limit_kmh ?? null)];
    put(this.chartNode);
    const options = {
      width: this.chartWidth(),
      height: 180,
      tzDate: (ts) => window.uPlot.tzDate(new Date(ts * 1000), 'Asia/Shanghai'),
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: { y: { range: (u, min, max) => [0, Math.max(max ?? 0, props.speed_limit_kmh ?? 0) * 1.1 || 10] } },
      series: [
        { label: t('police.time') },
        { label: t('seg.mean'), stroke: '#1c7ed6', width: 2, points: { show: windows.length < 30 } },
        { label: t('seg.median5'), stroke: '#2b8a3e', width: 1.5, dash: [6, 4], points: { show: false } },
        { label: t('seg.limit'), stroke: '#c92a2a', width: 1, points: { show: false } },
      ],
      axes: [{}, { size: 40 }],
    };
    this.chart = new window.uPlot(options, data, this.chartNode);
  }

  chartWidth() {
    return Math.max(200, (this.chartNode?.clientWidth || this.node.clientWidth) - 4);
  }

  resizeChart() {
    if (this.chart) this.chart.setSize({ width: this.chartWidth(), height: 180 });
  }

  /** After a language change. */
  relabel() {
    if (this.id) this.render();
  }
}
