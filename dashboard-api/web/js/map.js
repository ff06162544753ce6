// The live road map: Leaflet drawing the network of /api/v1/network on a plain
// background (no tile server: nothing may be fetched from outside), each segment
// coloured by its live jam factor from the WebSocket's `segments` channel.
//
// The colour runs continuously from green (free flow, jam factor 0) through
// yellow and orange to dark red (standstill, 10), so a change of a few km/h shows;
// segments without a recent window are grey and dashed, and a window's
// confidence sets the line's opacity. The two directions of a road share their
// coordinates, so each line is drawn a couple of pixels to the right of its
// direction of travel (right-hand traffic), recomputed at every zoom.

import { t, name } from './i18n.js';
import { clock, num } from './ui.js';

const L = window.L;

/** Jam factor → colour stops (0 free flow … 10 standstill). */
const RAMP = [
  [0, [26, 152, 80]],
  [2.5, [145, 207, 96]],
  [4.5, [254, 224, 139]],
  [6.5, [244, 109, 67]],
  [8.5, [215, 48, 39]],
  [10, [103, 0, 31]],
];
export const NO_DATA_COLOUR = '#9aa4ae';
const LINE_WEIGHT = { expressway: 4, bridge: 4, tunnel: 4, brt: 3, arterial: 3, urban: 2 };
const OFFSET_PX = 1.6;

/** The ramp's colour for a jam factor, as rgb(). */
export function jamColour(jam) {
  const x = Math.min(10, Math.max(0, jam));
  let i = 1;
  while (i < RAMP.length - 1 && RAMP[i][0] < x) i += 1;
  const [x0, c0] = RAMP[i - 1];
  const [x1, c1] = RAMP[i];
  const f = (x - x0) / (x1 - x0);
  const mix = c0.map((c, k) => Math.round(c + (c1[k] - c) * f));
  return `rgb(${mix[0]}, ${mix[1]}, ${mix[2]})`;
}

/** `coords` ([lat, lon]) moved `meters` to the right of the direction of travel. */
function offsetLine(coords, meters) {
  const out = [];
  for (let i = 0; i < coords.length; i += 1) {
    const a = coords[Math.max(0, i - 1)];
    const b = coords[Math.min(coords.length - 1, i + 1)];
    const cosLat = Math.cos((coords[i][0] * Math.PI) / 180);
    const east = (b[1] - a[1]) * cosLat;
    const north = b[0] - a[0];
    const length = Math.hypot(east, north) || 1;
    // Right-hand normal of (east, north) is (north, -east).
    const shiftDeg = meters / 111320;
    out.push([coords[i][0] - (east / length) * shiftDeg, coords[i][1] + ((north / length) * shiftDeg) / cosLat]);
  }
  return out;
}

export class TrafficMap {
  constructor(container, { onSegmentClick }) {
    this.onSegmentClick = onSegmentClick;
    this.segments = new Map(); // id → { line, coords, feature }
    this.states = new Map();
    this.selected = null;
    this.map = L.map(container, { zoomSnap: 0.25, minZoom: 8, maxZoom: 17, worldCopyJump: false });
    this.map.attributionControl.setPrefix('<a href="/web/vendor/leaflet-1.9.4/LICENSE">Leaflet</a>');
    for (const [pane, z] of [['graticule', 250], ['segments', 400], ['labels', 420], ['lots', 450], ['incidents', 460], ['buses', 470]]) {
      this.map.createPane(pane).style.zIndex = String(z);
    }
    this.segmentGroup = L.layerGroup().addTo(this.map);
    this.cityLabels = [];
    this.map.on('zoomend', () => this.reoffset());
  }

  /** Draws the network (a GeoJSON FeatureCollection of LineStrings) and fits the view to it. */
  draw(network) {
    const bounds = L.latLngBounds([]);
    for (const feature of network.features) for (const [lon, lat] of feature.geometry.coordinates) bounds.extend([lat, lon]);
    // Leaflet adds layers only once the map has a view: set it first.
    this.bounds = bounds;
    this.fit();
    const byCity = new Map();
    for (const feature of network.features) {
      const id = feature.properties.segment_id;
      const coords = feature.geometry.coordinates.map(([lon, lat]) => [lat, lon]);
      const line = L.polyline(coords, {
        pane: 'segments',
        className: 'seg',
        color: NO_DATA_COLOUR,
        weight: LINE_WEIGHT[feature.properties.road_class] ?? 3,
        opacity: 0.8,
        dashArray: '4 5',
        lineCap: 'butt',
      });
      line.bindTooltip(() => this.tooltip(id), { sticky: true, direction: 'top' });
      line.on('click', () => this.onSegmentClick(id));
      line.addTo(this.segmentGroup);
      line.getElement().dataset.segment = id;
      this.segments.set(id, { line, coords, feature });
      const city = feature.properties.city;
      const sum = byCity.get(city) ?? { lat: 0, lon: 0, n: 0 };
      for (const [lat, lon] of coords) {
        sum.lat += lat;
        sum.lon += lon;
        sum.n += 1;
      }
      byCity.set(city, sum);
    }
    this.drawBackground(bounds, byCity);
    this.reoffset();
  }

  fit() {
    if (this.bounds.isValid()) this.map.fitBounds(this.bounds, { padding: [16, 16] });
    else this.map.setView([24.48, 118.09], 10); // no roads at all: still a usable, empty map
  }

  /** A light graticule every 0.1° and each city's name at the middle of its roads. */
  drawBackground(bounds, byCity) {
    const padded = bounds.pad(0.5);
    const step = 0.1;
    const style = { pane: 'graticule', className: 'graticule', interactive: false, weight: 1 };
    for (let lat = Math.floor(padded.getSouth() / step) * step; lat <= padded.getNorth(); lat += step) {
      L.polyline([[lat, padded.getWest()], [lat, padded.getEast()]], style).addTo(this.map);
    }
    for (let lon = Math.floor(padded.getWest() / step) * step; lon <= padded.getEast(); lon += step) {
      L.polyline([[padded.getSouth(), lon], [padded.getNorth(), lon]], style).addTo(this.map);
    }
    for (const [city, sum] of byCity) {
      const label = L.tooltip({ pane: 'labels', permanent: true, direction: 'center', className: 'city-label', interactive: false })
        .setLatLng([sum.lat / sum.n, sum.lon / sum.n])
        .setContent(name(city));
      label.addTo(this.map);
      this.cityLabels.push({ city, label });
    }
  }

  /** After a language change. */
  relabel() {
    for (const { city, label } of this.cityLabels) label.setContent(name(city));
  }

  reoffset() {
    const zoom = this.map.getZoom();
    const center = this.map.getCenter();
    const metersPerPixel = (40075016.686 * Math.cos((center.lat * Math.PI) / 180)) / 2 ** (zoom + 8);
    for (const { line, coords } of this.segments.values()) line.setLatLngs(offsetLine(coords, OFFSET_PX * metersPerPixel));
  }

  tooltip(id) {
    const { feature } = this.segments.get(id);
    const state = this.states.get(id);
    const speed = state ? `${num(state.mean_speed_kmh)} ${t('unit.kmh')} · ${t('seg.jam')} ${num(state.jam_factor)}` : t('map.noData');
    const text = `${feature.properties.name}\n${speed}`;
    const div = document.createElement('div');
    div.className = 'seg-tip';
    div.textContent = text;
    return div;
  }

  /** Applies the `segments` channel's entries; `changed` null means all of them. */
  applySegments(states, changed) {
    this.states = states;
    const ids = changed ?? this.segments.keys();
    for (const id of ids) {
      const segment = this.segments.get(id);
      if (!segment) continue;
      const state = states.get(id);
      const style = state
        ? { color: jamColour(state.jam_factor), opacity: 0.45 + 0.55 * Math.min(1, Math.max(0, state.confidence)), dashArray: null }
        : { color: NO_DATA_COLOUR, opacity: 0.8, dashArray: '4 5' };
      if (id === this.selected) style.weight = (LINE_WEIGHT[segment.feature.properties.road_class] ?? 3) + 3;
      segment.line.setStyle(style);
      segment.line.getElement().dataset.jam = state ? String(state.jam_factor) : '';
    }
  }

  select(id) {
    const previous = this.selected;
    this.selected = id;
    for (const which of [previous, id]) {
      const segment = which && this.segments.get(which);
      if (!segment) continue;
      const base = LINE_WEIGHT[segment.feature.properties.road_class] ?? 3;
      segment.line.setStyle({ weight: which === id ? base + 3 : base });
      if (which === id) segment.line.bringToFront();
    }
  }

  feature(id) {
    return this.segments.get(id)?.feature;
  }

  /** The middle of a segment, for markers that belong to it (incidents). */
  middle(id) {
    const segment = this.segments.get(id);
    if (!segment) return null;
    const { coords } = segment;
    if (coords.length % 2 === 1) return coords[(coords.length - 1) / 2];
    const [a, b] = [coords[coords.length / 2 - 1], coords[coords.length / 2]];
    return [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
  }

  summary(asOfMs) {
    return t('map.summary', { n: this.states.size, total: this.segments.size, time: clock(asOfMs) });
  }
}
