// The one way the dashboard talks to the HTTP API, and who it talks as.
//
// A person signs in by pasting a bearer token (`egret token --role police`
// prints one). The token is a JWT, so its role, subject and expiry can be read
// here to pick the views it opens; the signature is checked by the server on
// every request, never trusted here. It is kept in sessionStorage: it survives a
// reload but not closing the tab. Every police action is an API call with this
// token, so the server's audit log sees each one.

import { t } from './i18n.js';

const STORAGE_KEY = 'egret.token';

/** An API answer that was not 2xx, with the contract's error code and message. */
export class ApiFailure extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let token = sessionStorage.getItem(STORAGE_KEY);
let claims = token ? decode(token) : null;
if (!claims) token = null;

/** The claims of a JWT (sub, role, iat, exp) without checking its signature, or null. */
function decode(candidate) {
  const parts = candidate.trim().split('.');
  if (parts.length !== 3) return null;
  try {
    const json = atob(parts[1].replace(/-/g, '+').replace(/_/g, '/'));
    const bytes = Uint8Array.from(json, (c) => c.charCodeAt(0));
    const payload = JSON.parse(new TextDecoder().decode(bytes));
    return typeof payload.role === 'string' && typeof payload.sub === 'string' ? payload : null;
  } catch {
    return null;
  }
}

export function session() {
  return claims ? { role: claims.role, sub: claims.sub, exp: claims.exp } : null;
}

export function currentToken() {
  return token;
}

function announce() {
  document.dispatchEvent(new CustomEvent('egret:auth', { detail: session() }));
}

/** Keeps `candidate` as the session's token; throws an Error with a readable message if it cannot be one. */
export function signIn(candidate) {
  const cleaned = candidate.trim().replace(/^Bearer\s+/i, '');
  const read = decode(cleaned);
  if (!read) throw new Error(t('auth.bad'));
  if (Number.isFinite(read.exp) && read.exp * 1000 < Date.now()) throw new Error(t('auth.expired'));
  token = cleaned;
  claims = read;
  sessionStorage.setItem(STORAGE_KEY, token);
  announce();
}

export function signOut(reason) {
  token = null;
  claims = null;
  sessionStorage.removeItem(STORAGE_KEY);
  document.dispatchEvent(new CustomEvent('egret:auth', { detail: null, bubbles: false }));
  if (reason) document.dispatchEvent(new CustomEvent('egret:auth-refused', { detail: reason }));
}

/** Whether the signed-in role is one of `roles`. */
export function hasRole(...roles) {
  return claims !== null && roles.includes(claims.role);
}

/**
 * Calls the API and returns its JSON (null for 204). Throws ApiFailure with the
 * server's error code for a non-2xx answer; a 401 also ends the session, since
 * the server no longer accepts the token.
 */
export async function api(path, { method = 'GET', body } = {}) {
  const headers = { accept: 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  } catch (e) {
    throw new ApiFailure(0, 'network', e.message);
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok) {
    const code = json?.error?.code ?? `http_${response.status}`;
    const message = json?.error?.message ?? (text || response.statusText);
    if (response.status === 401 && token) signOut(t('auth.refused', { msg: message }));
    throw new ApiFailure(response.status, code, message);
  }
  return json;
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== '') search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}
