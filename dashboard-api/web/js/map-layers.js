// What the live map shows on top of the roads: parking lots with their free
// spaces, open incidents and buses, each from its WebSocket channel, with the
// side panel's lists of lots and incidents.
//
// Everything is a circle marker (an SVG path), never Leaflet's default marker
// image, so nothing but this page's own files is loaded. A bus glides from its
// last position to its new one instead of jumping, so a person can follow it
// along its route between the GPS reports.

import { t } from './i18n.js';
import { el, put, clock, empty } from './ui.js';

const L = window.L;

const BUS_COLOUR = { intercity: '#7048e8', brt: '#e8590c' };
const CITY_BUS_COLOUR = '#1c7ed6';
const GLIDE_MS = 900;

function lotColour(lot) {
  if (lot.state === 'closed') return '#495057';
  if (lot.available === null || lot.available === undefined || lot.state === 'unknown') return '#adb5bd';
  if (lot.state === 'full' || lot.available <= 0) return '#c92a2a';
  return lot.available / lot.capacity < 0.2 ? '#f08c00' : '#2b8a3e';
}

function lotText(lot) {
  const free = lot.available === null || lot.available === undefined ? t('parking.unknown') : t('parking.free', { free: lot.available, capacity: lot.capacity });
  return `${lot.name}: ${free} (${t(`parking.state.${lot.state}`)})`;
}

export class ParkingLayer {
  constructor(map, listNode) {
    this.group = L.layerGroup().addTo(map);
    this.markers = new Map();
    this.listNode = listNode;
    this.lots = new Map();
  }

  apply(lots) {
    this.lots = lots;
    for (const lot of lots.values()) {
      let marker = this.markers.get(lot.lot_id);
      if (!marker) {
        marker = L.circleMarker([lot.lat, lot.lon], { pane: 'lots', className: 'lot', radius: 4 + Math.sqrt(lot.capacity) / 8, weight: 2, color: '#fff', fillOpacity: 0.95 });
        marker.bindTooltip(() => lotText(this.lots.get(lot.lot_id) ?? lot), { direction: 'top' });
        marker.addTo(this.group);
        marker.getElement().dataset.lot = lot.lot_id;
        this.markers.set(lot.lot_id, marker);
      }
      marker.setStyle({ fillColor: lotColour(lot) });
    }
    this.render();
  }

  render() {
    if (this.lots.size === 0) {
      put(this.listNode, empty(t('parking.unknown')));
      return;
    }
    const rows = [...this.lots.values()].sort((a, b) => a.lot_id.localeCompare(b.lot_id));
    put(
      this.listNode,
      el(
        'ul',
        { class: 'lots' },
        rows.map((lot) =>
          el(
            'li',
            { dataset: { lot: lot.lot_id } },
            el('span', { class: `dot dot-${lot.state}` }),
            el('span', { class: 'lot-name' }, lot.name),
            el('span', { class: 'lot-free' }, lot.available === null || lot.available === undefined ? '—' : `${lot.available} / ${lot.capacity}`),
          ),
        ),
      ),
    );
  }
}

export class IncidentLayer {
  constructor(trafficMap, listNode) {
    this.trafficMap = trafficMap;
    this.group = L.layerGroup().addTo(trafficMap.map);
    this.listNode = listNode;
    this.incidents = new Map();
  }

  apply(incidents) {
    this.incidents = incidents;
    this.group.clearLayers();
    for (const incident of incidents.values()) {
      const at = this.trafficMap.middle(incident.segment_id);
      if (!at) continue;
      const marker = L.circleMarker(at, { pane: 'incidents', className: 'incident', radius: 7 + 2 * incident.severity, color: '#fff', weight: 2, fillColor: '#e03131', fillOpacity: 0.9 });
      marker.bindTooltip(() => this.line(incident), { direction: 'top' });
      marker.on('click', () => this.trafficMap.onSegmentClick(incident.segment_id));
      marker.addTo(this.group);
    }
    this.render();
  }

  line(incident) {
    const road = this.trafficMap.feature(incident.segment_id)?.properties.name ?? incident.segment_id;
    return t('incident.line', { kind: t(`incident.${incident.kind}`), segment: road, severity: incident.severity, time: clock(incident.onset_ms) });
  }

  render() {
    const open = [...this.incidents.values()].sort((a, b) => b.severity - a.severity || a.detected_ms - b.detected_ms);
    if (open.length === 0) {
      put(this.listNode, empty(t('incidents.none')));
      return;
    }
    put(
      this.listNode,
      el(
        'ul',
        { class: 'incidents' },
        open.map((incident) =>
          el('li', { class: `sev-${incident.severity}`, tabIndex: 0, onclick: () => this.trafficMap.onSegmentClick(incident.segment_id) }, this.line(incident)),
        ),
      ),
    );
  }
}

export class BusLayer {
  /** `routes`: route_id → route of /api/v1/routes, for names, kinds and stop names. */
  constructor(map, routes) {
    this.group = L.layerGroup().addTo(map);
    this.routes = routes;
    this.stopNames = new Map();
    for (const route of routes.values()) {
      for (const direction of route.directions) for (const stop of direction.stops) this.stopNames.set(stop.stop_id, stop.name);
    }
    this.markers = new Map(); // bus_id → { marker, from, to, started }
    this.buses = new Map();
    this.animating = false;
  }

  colour(routeId) {
    const kind = this.routes.get(routeId)?.kind;
    return BUS_COLOUR[kind] ?? CITY_BUS_COLOUR;
  }

  text(bus) {
    const route = this.routes.get(bus.route_id);
    const lines = [t('bus.line', { route: route ? route.name : bus.route_id, bus: bus.bus_id })];
    const next = bus.next_stops?.[0];
    if (next) lines.push(t('bus.next', { stop: this.stopNames.get(next.stop_id) ?? next.stop_id, time: clock(next.predicted_ms) }));
    const div = document.createElement('div');
    div.className = 'bus-tip';
    div.textContent = lines.join('\n');
    return div;
  }

  apply(buses, changed) {
    this.buses = buses;
    const now = performance.now();
    for (const id of changed ?? buses.keys()) {
      const bus = buses.get(id);
      const known = this.markers.get(id);
      if (!bus) {
        if (known) this.group.removeLayer(known.marker);
        this.markers.delete(id);
        continue;
      }
      const to = L.latLng(bus.lat, bus.lon);
      if (!known) {
        const marker = L.circleMarker(to, { pane: 'buses', className: 'bus', radius: 4.5, weight: 1.5, color: '#fff', fillColor: this.colour(bus.route_id), fillOpacity: 1 });
        marker.bindTooltip(() => this.text(this.buses.get(id) ?? bus), { direction: 'top' });
        marker.addTo(this.group);
        marker.getElement().dataset.bus = id;
        this.markers.set(id, { marker, from: to, to, started: now });
      } else {
        known.from = known.marker.getLatLng();
        known.to = to;
        known.started = now;
      }
    }
    if (!this.animating) {
      this.animating = true;
      requestAnimationFrame((time) => this.glide(time));
    }
  }

  glide(time) {
    let moving = false;
    for (const entry of this.markers.values()) {
      const f = Math.min(1, (time - entry.started) / GLIDE_MS);
      if (f < 1) moving = true;
      const lat = entry.from.lat + (entry.to.lat - entry.from.lat) * f;
      const lng = entry.from.lng + (entry.to.lng - entry.from.lng) * f;
      const current = entry.marker.getLatLng();
      if (current.lat !== lat || current.lng !== lng) entry.marker.setLatLng([lat, lng]);
    }
    if (moving) requestAnimationFrame((next) => this.glide(next));
    else this.animating = false;
  }
}

/** Shows or hides a layer group on the map. */
export function setVisible(map, group, visible) {
  if (visible && !map.hasLayer(group)) group.addTo(map);
  if (!visible && map.hasLayer(group)) map.removeLayer(group);
}

/** The route kinds' colours, for the legend. */
export function busLegend() {
  return [
    ['intercity', BUS_COLOUR.intercity],
    ['brt', BUS_COLOUR.brt],
    ['bus', CITY_BUS_COLOUR],
  ];
}

