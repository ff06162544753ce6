// Small DOM and formatting helpers shared by every view.
//
// Elements are built with el() rather than innerHTML so that text from the API
// (plates, road names, reasons) is never parsed as markup, and so the page runs
// under a Content-Security-Policy that forbids inline styles and scripts.
// Times are shown in Xiamen time (UTC+8, no daylight saving) whatever the
// browser's own zone, because the data and the people using it are there.

import { t } from './i18n.js';

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An element with attributes (class, dataset, on* handlers, properties) and children. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  return fill(node, attrs, children);
}

/** The same for SVG elements. */
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  return fill(node, attrs, children);
}

function fill(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key === 'class') node.setAttribute('class', value);
    else if (key in node && !(node instanceof SVGElement)) node[key] = value;
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replaces the children of `node`. */
export function put(node, ...children) {
  node.replaceChildren();
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** A message box for the loading, empty and error states, told apart by data-state. */
export function stateBox(state, text) {
  return el('div', { class: `state state-${state}`, dataset: { state }, role: state === 'error' ? 'alert' : 'status' }, text);
}

export const loading = () => stateBox('loading', t('state.loading'));
export const empty = (text) => stateBox('empty', text);
export const failed = (error) => stateBox('error', t('state.error', { msg: error?.message ?? String(error) }));

const XIAMEN_OFFSET_MS = 8 * 3600 * 1000;

function pad(n, width = 2) {
  return String(n).padStart(width, '0');
}

/** HH:MM:SS in Xiamen time. */
export function clock(ms) {
  if (!Number.isFinite(ms)) return '—';
  const d = new Date(ms + XIAMEN_OFFSET_MS);
  return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}

/** YYYY-MM-DD HH:MM:SS in Xiamen time. */
export function dateTime(ms) {
  if (!Number.isFinite(ms)) return '—';
  const d = new Date(ms + XIAMEN_OFFSET_MS);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${clock(ms)}`;
}

/** A datetime-local input's value read as Xiamen time, in epoch ms (null when empty). */
export function fromXiamenInput(value) {
  if (!value) return null;
  const [date, time = '00:00'] = value.split('T');
  const [y, mo, d] = date.split('-').map(Number);
  const [h, mi, s = 0] = time.split(':').map(Number);
  return Date.UTC(y, mo - 1, d, h, mi, s) - XIAMEN_OFFSET_MS;
}

/** An epoch ms as a datetime-local value in Xiamen time. */
export function toXiamenInput(ms) {
  return dateTime(ms).replace(' ', 'T').slice(0, 16);
}

/** A number with `digits` decimals, or a dash when there is none. */
export function num(x, digits = 1) {
  return Number.isFinite(x) ? x.toFixed(digits) : '—';
}

/** A definition list from [label, value] pairs (pairs with an undefined value are left out). */
export function facts(pairs) {
  const list = el('dl', { class: 'facts' });
  for (const [label, value] of pairs) {
    if (value === undefined) continue;
    list.append(el('dt', {}, label), el('dd', {}, value));
  }
  return list;
}

/** A table from a header row and rows of cells; `onRow(row, index)` makes rows clickable. */
export function table(headers, rows, { onRow, rowData } = {}) {
  const body = el('tbody');
  rows.forEach((cells, i) => {
    const tr = el('tr', { dataset: rowData ? rowData(i) : {} }, cells.map((c) => el('td', {}, c)));
    if (onRow) {
      tr.tabIndex = 0;
      tr.classList.add('clickable');
      tr.addEventListener('click', () => onRow(tr, i));
      tr.addEventListener('keydown', (e) => {
        if (e.key === 'Enter') onRow(tr, i);
      });
    }
    body.append(tr);
  });
  return el('table', { class: 'grid' }, el('thead', {}, el('tr', {}, headers.map((h) => el('th', {}, h)))), body);
}
