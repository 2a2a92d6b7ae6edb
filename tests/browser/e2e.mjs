// e2e.mjs - drive headless Chromium (playwright-core, the system's
// /usr/bin/chromium) through wsgate; run by run.sh, which starts the
// backends and the gateway and sets:
//   PAGE_BASE   URL of the directory holding index.html (trailing '/')
//   WS_BASE     "" when the page's own origin is wsgate (web_root), else the
//               ws:// origin of wsgate (the page is served elsewhere)
//   ROUTES      echo=/echo,deny=/deny,hb=/hb,z=/z route paths (z compresses)
//   SCENARIOS   comma list: echo,echo-deflate,echo-b64,origin,heartbeat,static,demo,novnc
//   HOLD        heartbeat idle seconds (5)
//   DEMO_URL    URL of a wsgate serving contrib/web (the demo terminal page)
//   DEMO_PATH   that wsgate's echo route, the page's default (/echo)
//   NOVNC_URL   vnc.html URL for the novnc scenario
//   NOVNC_COLORS  "r,g,b;r,g,b" colours the remote desktop must show
//   ARTIFACTS   directory for screenshots and page logs
//   CHROMIUM    browser binary (/usr/bin/chromium)
//   WAIT_FOR    host:port list that must accept connections first
// Prints one "ok"/"not ok" line per scenario and a final
// "N passed, N failed" line; exits 0 when every scenario passed.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';

const env = process.env;
const CHROMIUM = env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = env.ARTIFACTS || mkdtempSync(join(tmpdir(), 'wsgate-browser-art-'));
const HOLD = Number(env.HOLD || 5);
const routes = Object.fromEntries(
  (env.ROUTES || 'echo=/echo,deny=/deny,hb=/hb,z=/z').split(',').map((kv) => kv.split('=')),
);
const scenarios = (env.SCENARIOS || 'echo,echo-b64,origin,heartbeat').split(',').filter(Boolean);
mkdirSync(ARTIFACTS, { recursive: true });

function waitPort(hostport, timeoutMs) {
  const i = hostport.lastIndexOf(':');
  const host = hostport.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(hostport.slice(i + 1));
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const s = connect({ host, port }, () => {
        s.destroy();
        resolve();
      });
      s.on('error', () => {
        s.destroy();
        if (Date.now() > deadline) reject(new Error(`${hostport} does not accept connections`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

function wsRoute(name) {
  const path = routes[name];
  return env.WS_BASE ? env.WS_BASE + path : path;
}

// Load index.html for one page scenario and wait for window.__result.
async function pageScenario(ctx, name, test, route, extra, timeoutMs) {
  const page = await ctx.newPage();
  const lines = [];
  page.on('console', (m) => lines.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => lines.push(`pageerror: ${e.message}`));
  const url = `${env.PAGE_BASE}index.html?test=${test}&ws=${encodeURIComponent(route)}${extra || ''}`;
  let result;
  try {
    const resp = await page.goto(url, { waitUntil: 'load', timeout: 15000 });
    if (!resp || resp.status() !== 200) throw new Error(`page load: HTTP ${resp && resp.status()}`);
    await page.waitForFunction(() => window.__result !== undefined, null, { timeout: timeoutMs });
    result = await page.evaluate(() => window.__result);
  } catch (e) {
    result = { ok: false, checks: [], error: String(e.message || e) };
  }
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true }).catch(() => {});
  writeFileSync(join(ARTIFACTS, `${name}.log`), lines.join('\n') + '\n');
  await page.close();
  const failed = result.checks.filter((c) => !c.ok);
  const detail = result.ok
    ? `${result.checks.length} checks`
    : [result.error, ...failed.map((c) => `${c.name}: ${c.detail}`)].filter(Boolean).join('; ') +
      (lines.length ? `\n# page log:\n# ${lines.slice(-10).join('\n# ')}` : '');
  return { ok: result.ok, detail };
}

// noVNC from the novnc package: autoconnect through the token route, wait for
// the remote framebuffer and check its pixels show the colours the test drew
// on the X display.
async function novncScenario(ctx) {
  const page = await ctx.newPage();
  const lines = [];
  page.on('console', (m) => lines.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => lines.push(`pageerror: ${e.message}`));
  const colors = (env.NOVNC_COLORS || '255,0,0;0,0,255')
    .split(';')
    .map((c) => c.split(',').map(Number));
  let ok = false;
  let detail = '';
  try {
    const resp = await page.goto(env.NOVNC_URL, { waitUntil: 'load', timeout: 15000 });
    if (!resp || resp.status() !== 200) throw new Error(`vnc.html: HTTP ${resp && resp.status()}`);
    await page.waitForFunction(
      () => document.documentElement.classList.contains('noVNC_connected'),
      null,
      { timeout: 20000 },
    );
    // Poll the canvas until the framebuffer shows every expected colour.
    const deadline = Date.now() + 20000;
    let stats;
    for (;;) {
      stats = await page.evaluate((want) => {
        const c = document.querySelector('#noVNC_container canvas');
        if (!c || !c.width || !c.height) return null;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const counts = want.map(() => 0);
        const distinct = new Set();
        for (let i = 0; i < d.length; i += 4) {
          if (distinct.size < 64) distinct.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
          want.forEach((w, k) => {
            if (Math.abs(d[i] - w[0]) < 24 && Math.abs(d[i + 1] - w[1]) < 24 && Math.abs(d[i + 2] - w[2]) < 24)
              counts[k]++;
          });
        }
        return { w: c.width, h: c.height, pixels: d.length / 4, counts, distinct: distinct.size };
      }, colors);
      if (stats && stats.counts.every((n) => n > stats.pixels * 0.05)) break;
      if (Date.now() > deadline) break;
      await page.waitForTimeout(200);
    }
    await page
      .locator('#noVNC_container canvas')
      .screenshot({ path: join(ARTIFACTS, 'novnc-canvas.png') })
      .catch(() => {});
    ok = !!stats && stats.distinct > 1 && stats.counts.every((n) => n > stats.pixels * 0.05);
    detail = stats
      ? `${stats.w}x${stats.h} framebuffer, ${stats.distinct} distinct colours, ` +
        `pixels per expected colour: ${stats.counts.join(', ')}`
      : 'no canvas';
  } catch (e) {
    detail = String(e.message || e);
  }
  await page.screenshot({ path: join(ARTIFACTS, 'novnc.png') }).catch(() => {});
  writeFileSync(join(ARTIFACTS, 'novnc.log'), lines.join('\n') + '\n');
  await page.close();
  if (!ok && lines.length) detail += `\n# page log:\n# ${lines.slice(-10).join('\n# ')}`;
  return { ok, detail };
}

// The demo terminal page of contrib/web, served by a wsgate whose /echo route
// reaches the echo backend: connect, type an ASCII line and a UTF-8 line
// (each sent as binary with "\r\n" on Enter) and check #screen shows exactly
// the connect notice followed by both lines echoed back.
async function demoScenario(ctx) {
  const page = await ctx.newPage();
  const lines = [];
  page.on('console', (m) => lines.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => lines.push(`pageerror: ${e.message}`));
  const typed = ['hello from the demo 123', 'héllo wörld ✓ €😀'];
  const path = env.DEMO_PATH || '/echo';
  let ok = false;
  let detail = '';
  let text = null;
  try {
    if (!env.DEMO_URL) throw new Error('no DEMO_URL (the demo page needs wsgate\'s web_root)');
    const resp = await page.goto(env.DEMO_URL, { waitUntil: 'load', timeout: 15000 });
    if (!resp || resp.status() !== 200) throw new Error(`demo page: HTTP ${resp && resp.status()}`);
    const ctype = resp.headers()['content-type'] || '';
    if (!/^text\/html\b/i.test(ctype)) throw new Error(`demo page: Content-Type ${ctype}`);
    const field = await page.inputValue('#path');
    if (field !== path) throw new Error(`#path is ${JSON.stringify(field)}, expected ${JSON.stringify(path)}`);
    await page.click('#connect');
    await page.waitForFunction(
      () => document.getElementById('screen').textContent.includes('[connected'),
      null,
      { timeout: 15000 },
    );
    const url = new URL(env.DEMO_URL);
    const notice = `[connected to ws://${url.host}${path}]\n`;
    const want = notice + typed.map((l) => l + '\r\n').join('');
    const proto = await page.evaluate(() => (typeof ws !== 'undefined' && ws ? ws.protocol : null));
    if (proto !== 'binary') throw new Error(`negotiated subprotocol ${JSON.stringify(proto)}, expected "binary"`);
    for (const l of typed) {
      await page.click('#line');
      await page.keyboard.type(l);
      await page.keyboard.press('Enter');
      if ((await page.inputValue('#line')) !== '') throw new Error('#line not cleared after Enter');
    }
    try {
      await page.waitForFunction(
        (w) => document.getElementById('screen').textContent.length >= w.length,
        want,
        { timeout: 15000 },
      );
    } catch {
      // fall through: the exact comparison below reports what arrived
    }
    await page.waitForTimeout(300); // let anything unexpected arrive too
    text = await page.evaluate(() => document.getElementById('screen').textContent);
    ok = text === want;
    detail = ok
      ? `${typed.length} lines echoed (${new TextEncoder().encode(want.slice(notice.length)).length} bytes)`
      : `#screen is ${JSON.stringify(text)}, expected ${JSON.stringify(want)}`;
  } catch (e) {
    detail = String(e.message || e);
    if (text === null)
      text = await page
        .evaluate(() => document.getElementById('screen')?.textContent)
        .catch(() => null);
    if (text) detail += `; #screen: ${JSON.stringify(text)}`;
  }
  await page.screenshot({ path: join(ARTIFACTS, 'demo.png'), fullPage: true }).catch(() => {});
  writeFileSync(join(ARTIFACTS, 'demo.log'), lines.join('\n') + '\n');
  await page.close();
  if (!ok && lines.length) detail += `\n# page log:\n# ${lines.slice(-10).join('\n# ')}`;
  return { ok, detail };
}

async function main() {
  for (const hp of (env.WAIT_FOR || '').split(',').filter(Boolean)) await waitPort(hp, 10000);

  const profile = mkdtempSync(join(tmpdir(), 'wsgate-chromium-'));
  let ctx;
  try {
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: { width: 1024, height: 768 },
      timeout: 60000,
    });
  } catch (e) {
    rmSync(profile, { recursive: true, force: true });
    console.error(`cannot start ${CHROMIUM}: ${e.message}`);
    process.exit(1);
  }

  let passed = 0;
  let failed = 0;
  for (const s of scenarios) {
    let r;
    const t0 = Date.now();
    switch (s) {
      case 'echo':
        r = await pageScenario(ctx, s, 'echo', wsRoute('echo'), '', 120000);
        break;
      case 'echo-deflate': // Chromium offers permessage-deflate; the route compresses
        r = await pageScenario(ctx, s, 'echo', wsRoute('z'),
          '&ext=' + encodeURIComponent('permessage-deflate; client_max_window_bits=12'), 120000);
        break;
      case 'echo-b64':
        r = await pageScenario(ctx, s, 'echo-b64', wsRoute('echo'), '', 120000);
        break;
      case 'origin':
        r = await pageScenario(ctx, s, 'origin', wsRoute('deny'), '', 30000);
        break;
      case 'static':
        r = await pageScenario(ctx, s, 'static', '', '', 30000);
        break;
      case 'heartbeat':
        r = await pageScenario(ctx, s, 'heartbeat', wsRoute('hb'), `&hold=${HOLD}`, (HOLD + 60) * 1000);
        break;
      case 'demo':
        r = await demoScenario(ctx);
        break;
      case 'novnc':
        r = await novncScenario(ctx);
        break;
      default:
        r = { ok: false, detail: 'unknown scenario' };
    }
    const secs = ((Date.now() - t0) / 1000).toFixed(1);
    console.log(`${r.ok ? 'ok' : 'not ok'} - ${s} (${secs} s): ${r.detail}`);
    if (r.ok) passed++;
    else failed++;
  }
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
  if (failed > 0) console.log(`# screenshots and page logs: ${ARTIFACTS}`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 && passed > 0 ? 0 : 1);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
