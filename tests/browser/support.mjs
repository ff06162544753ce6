// Helpers of the dashboard's browser test (dashboard.test.mjs): the settings it
// is given by tests/dashboard_browser.rs, a relay that can take the network away
// from the page, a guard that records every request leaving 127.0.0.1, named
// steps with a pass/fail summary, and API calls made from Node to compare the
// page against.

import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';

/** The settings, from the environment; every one is required but the browser's path. */
export function settings() {
  const need = (key) => {
    const value = process.env[key];
    if (!value) throw new Error(`${key} is not set (tests/dashboard_browser.rs sets it)`);
    return value;
  };
  return {
    url: need('EGRET_URL').replace(/\/$/, ''),
    police: need('EGRET_POLICE_TOKEN'),
    dispatcher: need('EGRET_DISPATCHER_TOKEN'),
    admin: need('EGRET_ADMIN_TOKEN'),
    shots: need('EGRET_SCREENSHOT_DIR'),
    profile: need('EGRET_BROWSER_PROFILE'),
    chromium: process.env.EGRET_CHROMIUM || '/usr/bin/chromium',
  };
}

/**
 * A TCP relay on 127.0.0.1 in front of egret. The page is loaded through it, so
 * cut() is a real lost connection for the page (open sockets reset, new ones
 * refused) and restore() brings the server back at the same address.
 */
export async function startRelay(targetUrl) {
  const target = new URL(targetUrl);
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  const listen = (port) => new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve(server.address().port);
    });
  });
  const port = await listen(0);
  return {
    url: `http://127.0.0.1:${port}`,
    async cut() {
      await new Promise((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
    },
    async restore() {
      await listen(port);
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
    },
  };
}

/**
 * Watches a browser context: every request and WebSocket must go to 127.0.0.1
 * (anything else is aborted and recorded), and Content-Security-Policy
 * violations and uncaught page errors are recorded too.
 */
export async function guardContext(context) {
  const record = { checked: 0, offsite: [], cspViolations: [], pageErrors: [] };
  const allowed = (raw) => {
    const url = new URL(raw);
    if (['data:', 'blob:', 'about:'].includes(url.protocol)) return true;
    return url.hostname === '127.0.0.1';
  };
  const check = (raw) => {
    record.checked += 1;
    if (!allowed(raw)) record.offsite.push(raw);
  };
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (!allowed(url)) {
      record.offsite.push(url);
      return route.abort('blockedbyclient');
    }
    return route.continue();
  });
  const watchPage = (page) => {
    page.on('request', (request) => check(request.url()));
    page.on('websocket', (ws) => check(ws.url()));
    page.on('pageerror', (error) => record.pageErrors.push(error.message));
    page.on('console', (message) => {
      if (message.type() === 'error' && /Content.Security.Policy/i.test(message.text())) record.cspViolations.push(message.text());
    });
  };
  context.pages().forEach(watchPage);
  context.on('page', watchPage);
  return record;
}

/** Named steps run in order; a failed step is reported and the rest still run where they can. */
export function stepper() {
  const results = [];
  return {
    async step(name, fn) {
      const started = Date.now();
      try {
        await fn();
        results.push({ name, ok: true });
        console.log(`ok - ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
      } catch (error) {
        results.push({ name, ok: false });
        console.log(`not ok - ${name}\n${String(error.stack ?? error).replace(/^/gm, '    ')}`);
      }
    },
    summary() {
      const passed = results.filter((r) => r.ok).length;
      const failed = results.length - passed;
      console.log(`browser: ${passed} passed, ${failed} failed`);
      return failed;
    },
  };
}

/** GET an API path as JSON, from Node (not through the page). */
export async function apiGet(base, route, token) {
  const response = await fetch(`${base}${route}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const body = await response.json().catch(() => null);
  return { status: response.status, body };
}

/** Polls `probe` until it returns something truthy, or fails with `what` after `ms`. */
export async function eventually(what, probe, ms = 30000, every = 250) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await probe();
    if (last) return last;
    await new Promise((resolve) => setTimeout(resolve, every));
  }
  throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`);
}

export async function screenshot(page, dir, name) {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, name);
  await page.screenshot({ path: file, fullPage: false });
  console.log(`    screenshot ${file}`);
}
