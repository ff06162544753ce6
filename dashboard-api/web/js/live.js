// The WebSocket to /ws: subscriptions, sign-in, and reconnecting by itself.
//
// The server sends a snapshot of each channel on subscribe and deltas after it
// (upserts and removed ids), and keeps nothing per client: after a reconnect
// the client simply subscribes again and gets a fresh snapshot, so nothing is
// missed or applied twice. Browsers cannot set an Authorization header on a
// WebSocket, so a signed-in client sends {"op":"auth","token":…} first.
//
// A lost connection is retried with exponential backoff (1 s doubling to 30 s,
// with jitter so many dashboards do not return in step), and a connection that
// goes quiet for longer than the heartbeat allows is treated as lost: a cable
// pulled between two machines gives no close event.

import { currentToken } from './api.js';

const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 30000;
const PING_EVERY_MS = 15000;
const SILENT_LIMIT_MS = 40000;

export class Live {
  constructor() {
    this.handlers = new Map(); // channel → [handler(message)]
    this.status = { state: 'connecting', retryAt: 0 };
    this.retryMs = FIRST_RETRY_MS;
    this.socket = null;
    this.lastHeard = 0;
    this.statusListeners = [];
    setInterval(() => this.heartbeat(), PING_EVERY_MS);
  }

  /** Calls `handler` with every snapshot, delta and error of `channel`; subscribes now if connected. */
  subscribe(channel, handler) {
    const list = this.handlers.get(channel) ?? [];
    list.push(handler);
    this.handlers.set(channel, list);
    if (list.length === 1) this.send({ op: 'subscribe', channel });
  }

  unsubscribe(channel) {
    if (this.handlers.delete(channel)) this.send({ op: 'unsubscribe', channel });
  }

  /** `listener({state, retryAt})` on every change between connecting, live and lost. */
  onStatus(listener) {
    this.statusListeners.push(listener);
    listener(this.status);
  }

  setStatus(state, retryAt = 0) {
    this.status = { state, retryAt };
    for (const listener of this.statusListeners) listener(this.status);
  }

  connect() {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const socket = new WebSocket(`${scheme}://${location.host}/ws`);
    this.socket = socket;
    this.setStatus('connecting');
    socket.addEventListener('open', () => {
      if (socket !== this.socket) return;
      this.retryMs = FIRST_RETRY_MS;
      this.lastHeard = Date.now();
      this.setStatus('live');
      const token = currentToken();
      if (token) this.send({ op: 'auth', token });
      for (const channel of this.handlers.keys()) this.send({ op: 'subscribe', channel });
    });
    socket.addEventListener('message', (event) => {
      if (socket !== this.socket) return;
      this.lastHeard = Date.now();
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      this.dispatch(message);
    });
    socket.addEventListener('close', () => {
      if (socket === this.socket) this.lost();
    });
  }

  dispatch(message) {
    const channel = message.channel;
    if (!channel) {
      // Replies without a channel (authenticated, pong, a malformed-message error).
      for (const handler of this.handlers.get('*') ?? []) handler(message);
      return;
    }
    for (const handler of this.handlers.get(channel) ?? []) handler(message);
  }

  lost() {
    this.socket = null;
    const wait = Math.round(this.retryMs * (0.8 + Math.random() * 0.4));
    this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
    this.setStatus('lost', Date.now() + wait);
    setTimeout(() => this.connect(), wait);
  }

  heartbeat() {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return;
    if (Date.now() - this.lastHeard > SILENT_LIMIT_MS) {
      const dead = this.socket;
      this.lost();
      dead.close();
      return;
    }
    this.send({ op: 'ping' });
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  /** After a sign-in the server is told the new token; after a sign-out only a new connection forgets the old one. */
  reauthenticate() {
    const token = currentToken();
    if (token) {
      // Sent before any subscription a view makes in reply to the same sign-in.
      this.send({ op: 'auth', token });
    } else if (this.socket) {
      const old = this.socket;
      this.socket = null;
      old.close();
      this.connect();
    }
  }
}

/**
 * Keeps a map of id → entry for a channel from its snapshot and deltas, and calls
 * `onChange(entries, changedIds, message)` after each.
 */
export function mirror(live, channel, idKey, onChange) {
  const entries = new Map();
  live.subscribe(channel, (message) => {
    if (message.type === 'snapshot') {
      entries.clear();
      for (const item of message.items) entries.set(item[idKey], item);
      onChange(entries, null, message);
    } else if (message.type === 'delta') {
      const changed = new Set();
      for (const item of message.upserts) {
        entries.set(item[idKey], item);
        changed.add(item[idKey]);
      }
      for (const id of message.removes) {
        entries.delete(id);
        changed.add(id);
      }
      onChange(entries, changed, message);
    }
  });
  return entries;
}
