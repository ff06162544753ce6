// The dashboard in a real browser: Debian's chromium, headless, driven by
// playwright-core, against a running `egret demo` (tests/dashboard_browser.rs
// starts it, mints the tokens and runs this script with their settings).
//
// It checks what a person would: the map draws the network and its colours change
// as WebSocket updates arrive; a click on a segment shows its speed chart; the page
// switches to Chinese; a police sign-in lists violations, a search filters them and
// a ticket shows its evidence; hotlists are edited through the API (and audited);
// the dispatcher view shows the intercity routes with their ladders; the page fits
// a phone; a lost connection is shown and recovered from by itself. Throughout, no
// request may leave 127.0.0.1. Screenshots go to EGRET_SCREENSHOT_DIR.
//
// Expected values come from the API (fetched here from Node), never written in.

import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { settings, startRelay, guardContext, stepper, apiGet, eventually, screenshot } from './support.mjs';

const config = settings();
const relay = await startRelay(config.url);
const base = relay.url;
const context = await chromium.launchPersistentContext(config.profile, {
  executablePath: config.chromium,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1280, height: 800 },
});
const guard = await guardContext(context);
const page = context.pages()[0] ?? (await context.newPage());
const { step, summary } = stepper();
const shot = (p, name) => screenshot(p, config.shots, name);

// Every segments delta the page receives, with the ids it updated.
const segmentDeltas = [];
let segmentSnapshots = 0;
page.on('websocket', (ws) => {
  ws.on('framereceived', ({ payload }) => {
    let message;
    try {
      message = JSON.parse(typeof payload === 'string' ? payload : payload.toString());
    } catch {
      return;
    }
    if (message.channel !== 'segments') return;
    if (message.type === 'delta') segmentDeltas.push({ at: Date.now(), ids: message.upserts.map((u) => u.segment_id) });
    if (message.type === 'snapshot') segmentSnapshots += 1;
  });
});

const strokes = () => page.evaluate(() => Object.fromEntries([...document.querySelectorAll('path.seg')].map((p) => [p.dataset.segment, p.getAttribute('stroke')])));

try {
  await step('the map draws every segment of the network', async () => {
    const network = await apiGet(config.url, '/api/v1/network');
    await page.goto(`${base}/#map`);
    await page.waitForFunction(() => document.querySelectorAll('path.seg').length >= 100, null, { timeout: 30000 });
    const drawn = await page.locator('path.seg').count();
    assert.equal(drawn, network.body.features.length, 'one line per segment of /api/v1/network');
    await page.waitForSelector('#conn[data-state="live"]', { timeout: 30000 });
    // Live colours: segments with a window lose the dashed no-data style.
    await page.waitForFunction(() => document.querySelectorAll('path.seg:not([stroke-dasharray])').length >= 100, null, { timeout: 60000 });
    await page.waitForSelector('#map-status .summary');
    await shot(page, '01-map-en.png');
  });

  await step('segment colours change as WebSocket updates arrive', async () => {
    const before = await strokes();
    const since = Date.now();
    const changed = await eventually(
      'a segment to change colour after a delta',
      async () => {
        const now = await strokes();
        const ids = Object.keys(now).filter((id) => now[id] !== before[id]);
        return ids.length > 0 && segmentDeltas.some((d) => d.at >= since) ? ids : null;
      },
      120000,
      1000,
    );
    const updated = new Set(segmentDeltas.filter((d) => d.at >= since).flatMap((d) => d.ids));
    const unexplained = changed.filter((id) => !updated.has(id));
    assert.deepEqual(unexplained, [], 'every colour change follows an update of that segment');
    console.log(`    ${changed.length} segments changed colour after ${updated.size} segment updates`);
  });

  await step('a click on a segment shows its details and a speed chart', async () => {
    const live = (await apiGet(config.url, '/api/v1/segments')).body.segments;
    const busiest = live.sort((a, b) => b.sample_count - a.sample_count).slice(0, 40).map((s) => s.segment_id);
    // A point on a busy segment's line where nothing else (a bus, a car park) lies on top.
    const target = await page.evaluate((ids) => {
      for (const id of ids) {
        const path = document.querySelector(`path.seg[data-segment="${id}"]`);
        if (!path) continue;
        const length = path.getTotalLength();
        for (const f of [0.5, 0.35, 0.65, 0.2, 0.8]) {
          const p = path.getPointAtLength(length * f);
          const m = path.getScreenCTM();
          const x = m.a * p.x + m.c * p.y + m.e;
          const y = m.b * p.x + m.d * p.y + m.f;
          if (document.elementFromPoint(x, y) === path) return { id, x, y };
        }
      }
      return null;
    }, busiest);
    assert.ok(target, 'no busy segment could be clicked');
    await page.mouse.click(target.x, target.y);
    await page.waitForSelector('#segment-panel:not([hidden]) h2');
    assert.ok((await page.textContent('#segment-panel h2')).includes(target.id));
    const history = (await apiGet(config.url, `/api/v1/segments/${target.id}/history`)).body.windows.filter((w) => w.is_final);
    assert.ok(history.length > 0, `${target.id} has closed windows to chart`);
    await page.waitForSelector(`#segment-panel .chart[data-segment="${target.id}"] .uplot canvas`, { timeout: 20000 });
    await shot(page, '02-segment-chart.png');
  });

  await step('the page switches to Chinese and back', async () => {
    await page.click('#lang');
    await page.waitForSelector('html[lang="zh-CN"]');
    assert.equal((await page.textContent('nav.tabs a[data-view="map"]')).trim(), '实时路况');
    assert.ok((await page.textContent('#segment-panel h2')).startsWith('路段'));
    assert.ok((await page.textContent('#map-status')).includes('个路段'));
    await shot(page, '03-map-zh.png');
    await page.click('#lang');
    await page.waitForSelector('html[lang="en"]');
    assert.equal((await page.textContent('nav.tabs a[data-view="map"]')).trim(), 'Live map');
  });

  await step('a lost connection is shown, and the page reconnects by itself', async () => {
    const snapshotsBefore = segmentSnapshots;
    await relay.cut();
    await page.waitForSelector('#banner[data-state="lost"]:not([hidden])', { timeout: 45000 });
    assert.match(await page.textContent('#banner'), /Connection lost/);
    await shot(page, '04-connection-lost.png');
    await new Promise((resolve) => setTimeout(resolve, 2500));
    await relay.restore();
    await page.waitForSelector('#conn[data-state="live"]', { timeout: 45000 });
    assert.ok(await page.isHidden('#banner'));
    // Subscribed again: a fresh snapshot, then updates as before.
    await eventually('a new segments snapshot after reconnecting', () => segmentSnapshots > snapshotsBefore, 20000);
  });

  await step('a police sign-in shows violations, a filtered search and a ticket with its evidence', async () => {
    // Tickets are issued as the simulated traffic runs: wait for a section-speed one.
    const firstPage = await eventually('a section_speed violation from the API', async () => {
      const answer = await apiGet(config.url, '/api/v1/violations?kind=section_speed&limit=100', config.police);
      return answer.body?.violations?.length ? answer.body : null;
    }, 180000, 2000);
    await page.goto(`${base}/#police`);
    await page.waitForSelector('#view-police form.signin[data-needs="police"]');
    await page.fill('#view-police form.signin textarea', config.police);
    await page.click('#view-police form.signin button[type="submit"]');
    await page.waitForSelector('.violation-list[data-mode="live"] tr[data-violation]', { timeout: 30000 });
    await page.selectOption('form.filters select[name="kind"]', 'section_speed');
    await page.click('form.filters button[type="submit"]');
    await page.waitForSelector('.violation-list[data-mode="search"] tr[data-violation]', { timeout: 20000 });
    const kinds = await page.$$eval('.violation-list tr[data-violation]', (rows) => rows.map((r) => r.dataset.kind));
    assert.ok(kinds.every((k) => k === 'section_speed'), `kinds shown: ${[...new Set(kinds)]}`);
    const firstId = await page.getAttribute('.violation-list tr[data-violation]', 'data-violation');
    assert.equal(firstId, firstPage.violations[0].violation_id, 'the search lists what the API lists, in its order');
    await page.click(`.violation-list tr[data-violation="${firstId}"]`);
    await page.waitForSelector(`.evidence[data-violation="${firstId}"] .rule`);
    const v = (await apiGet(config.url, `/api/v1/violations/${firstId}`, config.police)).body;
    const text = await page.textContent('.evidence');
    assert.ok(text.includes(v.plate), 'the plate');
    assert.ok(text.includes(`${v.rule_id}, version ${v.rule_version}`), 'the rule and its version');
    const e = v.evidence;
    const speed = (e.distance_m / ((e.elapsed_ms + (e.clock_margin_ms ?? 0)) / 1000)) * 3.6;
    assert.ok(Math.abs(speed - v.measured) < 0.05, `the evidence gives ${speed} km/h, the ticket ${v.measured}`);
    assert.ok((await page.textContent('.evidence .computed')).includes(`${speed.toFixed(1)} km/h`), 'the speed computed from distance and times');
    assert.ok(text.includes(`${e.distance_m} m`), 'the distance');
    const reads = await page.$$eval('.evidence table.grid tbody tr', (rows) => rows.map((r) => r.cells[0].textContent));
    assert.deepEqual(reads, e.sightings.map((s) => s.device_id), 'one row per read, in order');
    await shot(page, '05-police-evidence.png');
  });

  await step('hotlists are listed, edited and deleted through the audited API', async () => {
    const lists = (await apiGet(config.url, '/api/v1/hotlists', config.police)).body.hotlists;
    await page.click('.subtabs button[data-tab="hotlists"]');
    await page.waitForSelector('.hotlist-index ul.hotlists');
    const shown = await page.$$eval('.hotlist-index button[data-list]', (b) => b.map((x) => x.dataset.list));
    assert.deepEqual(shown.sort(), lists.map((l) => l.name).sort());
    const name = `browser-test-${process.pid}`;
    const plate = '闽D1234' + String(process.pid % 10);
    await page.fill('.hotlist-index input[name="list-name"]', name);
    await page.click('.hotlist-index form button[type="submit"]');
    await page.fill('.add-plate input[name="plate"]', plate);
    await page.fill('.add-plate input[name="reason"]', 'browser test');
    await page.click('.add-plate button[type="submit"]');
    await page.click('.hotlist-editor .actions button.primary');
    await page.waitForSelector('.hotlist-editor .message.ok');
    const saved = await apiGet(config.url, `/api/v1/hotlists/${name}`, config.police);
    assert.equal(saved.status, 200);
    assert.deepEqual(saved.body.entries.map((e) => e.plate), [plate]);
    await page.click(`.hotlist-index button[data-list="${name}"]`);
    await page.waitForSelector(`.hotlist-editor[data-list="${name}"] tr[data-plate]`);
    await shot(page, '06-police-hotlists.png');
    await page.click('.hotlist-editor .actions button:not(.primary)');
    await page.click('.hotlist-editor .actions button.danger');
    await page.waitForSelector('.hotlist-editor .message.ok');
    assert.equal((await apiGet(config.url, `/api/v1/hotlists/${name}`, config.police)).status, 404);
    const audit = (await apiGet(config.url, '/api/v1/audit?limit=10000', config.admin)).body.entries;
    const mine = audit.filter((a) => a.detail === `name=${name}`).map((a) => a.action);
    assert.ok(mine.includes('PUT /api/v1/hotlists/{name}') && mine.includes('DELETE /api/v1/hotlists/{name}'), `audited: ${mine}`);
  });

  await step('the dispatcher view shows the intercity routes with their headway ladders', async () => {
    const routes = (await apiGet(config.url, '/api/v1/routes')).body.routes;
    const intercity = routes.filter((r) => r.kind === 'intercity');
    assert.ok(intercity.length > 0, 'the city model has intercity routes');
    await page.click('#sign-out');
    await page.goto(`${base}/#dispatch`);
    await page.waitForSelector('#view-dispatch form.signin[data-needs="dispatcher"]');
    await page.fill('#view-dispatch form.signin textarea', config.dispatcher);
    await page.click('#view-dispatch form.signin button[type="submit"]');
    await page.waitForSelector('section.route svg.ladder', { timeout: 30000 });
    const shown = await page.$$eval('section.route[data-kind="intercity"]', (s) => s.map((x) => x.dataset.route));
    assert.deepEqual(shown.sort(), intercity.map((r) => r.route_id).sort());
    const pairs = await page.$$eval('h3.pair', (h) => h.map((x) => x.textContent));
    const capital = (c) => c[0].toUpperCase() + c.slice(1);
    const expected = [...new Set(intercity.map((r) => r.cities.map(capital).join('–')))];
    assert.deepEqual(pairs.sort(), expected.sort(), 'one heading per pair of cities');
    for (const r of intercity) {
      const stops = await page.$$eval(`section.route[data-route="${r.route_id}"] .ladder-stop`, (c) => c.length);
      assert.equal(stops, r.directions.reduce((n, d) => n + d.stops.length, 0), `${r.route_id}: a tick per stop`);
    }
    // Clicked where a person would: at the stop's tick, which a bus standing at the
    // stop covers (page.click would wait for the tick to be uncovered).
    const centre = async (locator) => {
      const box = await locator.boundingBox();
      return { x: box.x + box.width / 2, y: box.y + box.height / 2 };
    };
    // The arrivals card for a stop, once it has an answer: a list, "none expected", or an error, which fails.
    const arrivalsAt = async (stopId) => {
      const card = `.arrivals[data-stop="${stopId}"]`;
      await page.waitForSelector(`${card} :is(ul.arrival-list, .state-empty, .state-error)`, { timeout: 30000 }).catch(async (e) => {
        const shown = await page.$$eval('.arrivals', (cs) => cs.map((c) => `${c.dataset.stop}: ${c.textContent}`));
        throw new Error(`${e.message}\n    arrivals cards: ${JSON.stringify(shown)}`);
      });
      assert.equal(await page.locator(`${card} .state-error`).count(), 0, await page.textContent(card));
    };
    const stop = intercity[0].directions[0].stops[1];
    const tickAt = page.locator(`section.route[data-route="${intercity[0].route_id}"] .ladder-stop[data-stop="${stop.stop_id}"]`).first();
    await tickAt.scrollIntoViewIfNeeded();
    const tick = await centre(tickAt);
    await page.mouse.click(tick.x, tick.y);
    await arrivalsAt(stop.stop_id);
    // A click on a bus opens the stop nearest to it on its ladder.
    const bus = page.locator('section.route[data-kind="intercity"] .ladder-bus').first();
    if ((await bus.count()) > 0) {
      // Measured in one go: the view is redrawn every 15 s, and the first bus may then be another.
      await bus.scrollIntoViewIfNeeded();
      const { at, nearest } = await bus.evaluate((dot) => {
        const mid = (node) => {
          const box = node.getBoundingClientRect();
          return { x: box.x + box.width / 2, y: box.y + box.height / 2 };
        };
        const at = mid(dot);
        const ticks = [...dot.ownerSVGElement.querySelectorAll('.ladder-stop')].map((c) => ({ id: c.dataset.stop, x: mid(c).x }));
        return { at, nearest: ticks.reduce((a, b) => (Math.abs(b.x - at.x) < Math.abs(a.x - at.x) ? b : a)) };
      });
      await page.mouse.click(at.x, at.y);
      await arrivalsAt(nearest.id);
    }
    await shot(page, '07-dispatch-en.png');
    await page.click('#lang');
    await page.waitForSelector('h2.group[data-group="intercity"]');
    assert.equal((await page.textContent('h2.group[data-group="intercity"]')).trim(), '城际线路');
    await shot(page, '08-dispatch-zh.png');
  });

  await step('the page fits a phone', async () => {
    const phone = await context.newPage();
    await phone.setViewportSize({ width: 390, height: 844 });
    for (const [view, name] of [['map', '09-phone-map-zh.png'], ['dispatch', '10-phone-dispatch-zh.png']]) {
      await phone.goto(`${base}/#${view}`);
      if (view === 'map') await phone.waitForFunction(() => document.querySelectorAll('path.seg:not([stroke-dasharray])').length >= 100, null, { timeout: 60000 });
      else {
        // A new tab has a session of its own: sign in again.
        await phone.fill('#view-dispatch form.signin textarea', config.dispatcher);
        await phone.click('#view-dispatch form.signin button[type="submit"]');
        await phone.waitForSelector('section.route svg.ladder', { timeout: 30000 });
      }
      const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `${view}: ${overflow} px wider than the screen`);
      await shot(phone, name);
    }
    await phone.close();
  });

  await step('no request left 127.0.0.1, and the page broke no rule of its security policy', async () => {
    assert.ok(guard.checked > 20, `only ${guard.checked} requests were seen: the guard is not watching`);
    assert.deepEqual(guard.offsite, [], 'requests to other hosts');
    assert.deepEqual(guard.cspViolations, [], 'Content-Security-Policy violations');
    assert.deepEqual(guard.pageErrors, [], 'uncaught errors in the page');
    console.log(`    ${guard.checked} requests and WebSockets, all to 127.0.0.1`);
  });
} finally {
  await context.close();
  await relay.close();
}

process.exitCode = summary() === 0 ? 0 : 1;
