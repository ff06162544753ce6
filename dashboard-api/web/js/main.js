// Starts the dashboard: the header (views, language, session, connection state),
// the live map with its layers and segment panel, the police and dispatcher
// views, and the one WebSocket they all share.
//
// The network and the routes are loaded once over HTTP (they do not change while
// the server runs); everything live arrives over the WebSocket. If that first
// load fails the page says so and tries again by itself, as the WebSocket does.

import { t, lang, setLang, applyStatic, name } from './i18n.js';
import { api, session, signOut } from './api.js';
import { Live, mirror } from './live.js';
import { TrafficMap } from './map.js';
import { ParkingLayer, IncidentLayer, BusLayer, setVisible, busLegend } from './map-layers.js';
import { SegmentPanel } from './segment-panel.js';
import { PoliceView } from './police.js';
import { DispatchView } from './dispatch.js';
import { el, put, loading, failed, empty } from './ui.js';

const BOOT_RETRY_MS = 5000;
const live = new Live();
const views = { police: null, dispatch: null };
let trafficMap = null;

// Registered before any view's listener: the server hears the new token before
// a view subscribes to a channel that needs it.
document.addEventListener('egret:auth', () => {
  live.reauthenticate();
  renderSession();
});
document.addEventListener('egret:lang', () => renderSession());

function renderSession() {
  const who = session();
  document.getElementById('who').textContent = who ? t('auth.who', { sub: who.sub, role: name(who.role) }) : '';
  document.getElementById('sign-out').hidden = !who;
  renderConnection(live.status);
}

let countdown = null;
function renderConnection(status) {
  const conn = document.getElementById('conn');
  const banner = document.getElementById('banner');
  conn.dataset.state = status.state;
  // The map greys out while what it shows may be stale.
  document.body.dataset.conn = status.state;
  clearInterval(countdown);
  const text = () => {
    if (status.state !== 'lost') return t(`conn.${status.state}`);
    const seconds = Math.ceil((status.retryAt - Date.now()) / 1000);
    return seconds > 0 ? t('conn.lost', { s: seconds }) : t('conn.retrying');
  };
  conn.textContent = status.state === 'lost' ? '●' : text();
  conn.title = text();
  banner.hidden = status.state !== 'lost';
  banner.dataset.state = status.state;
  if (status.state === 'lost') {
    banner.textContent = text();
    countdown = setInterval(() => {
      banner.textContent = text();
    }, 500);
  }
}

function showView() {
  const wanted = location.hash.replace('#', '');
  const current = ['map', 'police', 'dispatch'].includes(wanted) ? wanted : 'map';
  for (const section of document.querySelectorAll('main > .view')) section.hidden = section.dataset.view !== current;
  for (const link of document.querySelectorAll('nav.tabs a')) {
    if (link.dataset.view === current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  document.body.dataset.view = current;
  // Leaflet measures its container: it was zero-sized while hidden.
  if (current === 'map' && trafficMap) trafficMap.map.invalidateSize();
  views.dispatch?.setActive(current === 'dispatch');
}

function layerToggles(layers) {
  const node = document.getElementById('layer-toggles');
  const render = () =>
    put(
      node,
      layers.map(([key, group, extra]) => {
        const box = el('input', { type: 'checkbox', checked: trafficMap.map.hasLayer(group), onchange: (e) => setVisible(trafficMap.map, group, e.target.checked) });
        return el('label', { class: 'toggle', dataset: { layer: key } }, box, el('span', {}, t(`layer.${key}`)), extra ?? null);
      }),
    );
  render();
  document.addEventListener('egret:lang', render);
}

async function boot() {
  const status = document.getElementById('map-status');
  put(status, loading());
  let network;
  let routes;
  try {
    [network, routes] = await Promise.all([api('/api/v1/network'), api('/api/v1/routes')]);
  } catch (error) {
    put(status, failed(error));
    setTimeout(boot, BOOT_RETRY_MS);
    return;
  }
  const routeMap = new Map(routes.routes.map((r) => [r.route_id, r]));
  const panelNode = document.getElementById('segment-panel');
  trafficMap = new TrafficMap(document.getElementById('map'), { onSegmentClick: (id) => selectSegment(id) });
  trafficMap.draw(network);
  const panel = new SegmentPanel(panelNode, trafficMap, { onClose: () => trafficMap.select(null) });
  const selectSegment = (id) => {
    trafficMap.select(id);
    panel.show(id);
  };
  const parking = new ParkingLayer(trafficMap.map, document.getElementById('parking-list'));
  const incidents = new IncidentLayer(trafficMap, document.getElementById('incident-list'));
  const buses = new BusLayer(trafficMap.map, routeMap);
  const busKey = el(
    'span',
    { class: 'bus-key' },
    busLegend().map(([kind, colour]) => {
      const swatch = el('span', { class: 'bus-swatch', title: name(kind) });
      swatch.style.backgroundColor = colour; // CSSOM, which the page's CSP allows
      return swatch;
    }),
  );
  layerToggles([
    ['segments', trafficMap.segmentGroup],
    ['parking', parking.group],
    ['incidents', incidents.group],
    ['buses', buses.group, busKey],
  ]);

  let asOf = null;
  const renderStatus = () => {
    if (asOf === null) put(status, loading());
    else if (trafficMap.states.size === 0) put(status, empty(t('map.noLive')));
    else put(status, el('span', { class: 'summary', dataset: { live: trafficMap.states.size } }, trafficMap.summary(asOf)));
  };
  mirror(live, 'segments', 'segment_id', (entries, changed, message) => {
    asOf = message.as_of_ms;
    trafficMap.applySegments(entries, changed);
    panel.update(entries, changed, message.as_of_ms);
    renderStatus();
  });
  mirror(live, 'parking', 'lot_id', (entries) => parking.apply(entries));
  mirror(live, 'incidents', 'incident_id', (entries) => incidents.apply(entries));
  mirror(live, 'buses', 'bus_id', (entries, changed) => buses.apply(entries, changed));
  document.addEventListener('egret:lang', () => {
    trafficMap.relabel();
    panel.relabel();
    parking.render();
    incidents.render();
    renderStatus();
  });

  views.police = new PoliceView(document.getElementById('view-police'), live);
  views.dispatch = new DispatchView(document.getElementById('view-dispatch'), routeMap);
  live.onStatus((s) => {
    renderConnection(s);
    if (s.state === 'lost') renderStatus();
  });
  live.connect();
  showView();
}

document.getElementById('lang').addEventListener('click', () => setLang(lang() === 'zh' ? 'en' : 'zh'));
document.getElementById('sign-out').addEventListener('click', () => signOut());
window.addEventListener('hashchange', showView);
applyStatic();
renderSession();
showView();
boot();
