// e2e.mjs - drive headless Chromium (playwright-core, the system's
// /usr/bin/chromium) through wsgate; run by run.sh, which starts the
// backends and the gateway and sets:
//   PAGE_BASE   URL of the directory holding index.html (trailing '/')
//   WS_BASE     "" when the page's own origin is wsgate (web_root), else the
//               ws:// origin of wsgate (the page is served elsewhere)
//   ROUTES      echo=/echo,deny=/deny,hb=/hb,z=/z route paths (z compresses)
//   SCENARIOS   comma list: echo,echo-deflate,echo-b64,origin,heartbeat,static,demo,novnc,
//               hosts,replay
//   HOLD        heartbeat idle seconds (5)
//   DEMO_URL    URL of a wsgate serving contrib/web (the demo terminal page)
//   DEMO_PATH   that wsgate's echo route, the page's default (/echo)
//   NOVNC_URL   vnc.html URL for the novnc scenario
//   NOVNC_COLORS  "r,g,b;r,g,b" colours the remote desktop must show
//   ARTIFACTS   directory for screenshots and page logs
//   CHROMIUM    browser binary (/usr/bin/chromium)
//   WAIT_FOR    host:port list that must accept connections first
//   HOSTS_PORT  hosts: port of a wsgate tls listener routing /x by Host
//               (a.test -> "backend A", *.b.test -> "backend B"); Chromium
//               maps *.test to 127.0.0.1 (--host-resolver-rules)
//   HOSTS_SPKI  base64 SHA-256 of that listener's public key: the only
//               certificate Chromium accepts without a trusted CA
//   REPLAY_BASE URL of a wsgate web_root holding replay.html and
//               asciinema-player/; its route REPLAY_PATH (/rec) records as
//               asciicast into REC_DIR (web_root's rec/) and reaches a backend
//               that greets with REPLAY_BANNER "\r\n" and then echoes
// Prints one "ok"/"not ok" line per scenario and a final
// "N passed, N failed" line; exits 0 when every scenario passed.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync, mkdirSync, writeFileSync, readdirSync, readFileSync } from 'node:fs';
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

// A recording made through wsgate, replayed by contrib/web/replay.html with
// asciinema-player: a page socket on the recorded route reads the greeting,
// types a line (echoed back) and closes; the .cast file must hold exactly that
// output; then replay.html?cast=rec/FILE must end with the same text on the
// player's terminal, line for line.
async function replayScenario(ctx) {
  const page = await ctx.newPage();
  const lines = [];
  page.on('console', (m) => lines.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => lines.push(`pageerror: ${e.message}`));
  const banner = env.REPLAY_BANNER || '';
  const typed = 'typed through wsgate 7';
  const output = `${banner}\r\n${typed}\r\n`;
  // eslint-disable-next-line no-control-regex
  const screen = [...output.replace(/\x1b\[[0-9;]*m/g, '').split('\r\n').filter((l) => l !== '')];
  let ok = false;
  let detail = '';
  try {
    if (!env.REPLAY_BASE || !env.REC_DIR) throw new Error('no REPLAY_BASE/REC_DIR');
    const resp = await page.goto(`${env.REPLAY_BASE}replay.html`, { waitUntil: 'load', timeout: 15000 });
    if (!resp || resp.status() !== 200) throw new Error(`replay.html: HTTP ${resp && resp.status()}`);
    const wsUrl = env.REPLAY_BASE.replace(/^http/, 'ws') + (env.REPLAY_PATH || '/rec').replace(/^\//, '');
    const got = await page.evaluate(
      ([url, first, line]) =>
        new Promise((resolve, reject) => {
          const ws = new WebSocket(url);
          ws.binaryType = 'arraybuffer';
          let text = '';
          let sent = false;
          const t = setTimeout(() => reject(new Error(`timeout, received ${JSON.stringify(text)}`)), 15000);
          ws.onmessage = (ev) => {
            text += new TextDecoder().decode(ev.data, { stream: true });
            if (!sent && text.length >= first.length) {
              sent = true;
              ws.send(new TextEncoder().encode(line));
            }
            if (text.length >= first.length + line.length) ws.close(1000);
          };
          ws.onclose = (ev) => {
            clearTimeout(t);
            resolve({ text, code: ev.code });
          };
        }),
      [wsUrl, `${banner}\r\n`, `${typed}\r\n`],
    );
    if (got.text !== output || got.code !== 1000)
      throw new Error(`through the recorded route: ${JSON.stringify(got)}, expected ${JSON.stringify(output)}`);
    // The writer thread finishes the file after the session ends.
    let name = null;
    let events = null;
    const deadline = Date.now() + 10000;
    for (;;) {
      const casts = readdirSync(env.REC_DIR).filter((f) => f.endsWith('.cast'));
      if (casts.length > 1) throw new Error(`${casts.length} recordings in ${env.REC_DIR}: ${casts.join(' ')}`);
      if (casts.length === 1) {
        name = casts[0];
        const rows = readFileSync(join(env.REC_DIR, name), 'utf8').split('\n').filter(Boolean);
        try {
          const head = JSON.parse(rows[0]);
          if (head.version !== 2) throw new Error(`header ${rows[0]}`);
          events = rows.slice(1).map((r) => JSON.parse(r));
        } catch {
          events = null; // a line still being written
        }
        const out = events && events.filter((e) => e[1] === 'o').map((e) => e[2]).join('');
        const inp = events && events.filter((e) => e[1] === 'i').map((e) => e[2]).join('');
        if (out === output && inp === `${typed}\r\n`) break;
      }
      if (Date.now() > deadline)
        throw new Error(`recording ${name}: events ${JSON.stringify(events)}, expected output ${JSON.stringify(output)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const r2 = await page.goto(`${env.REPLAY_BASE}replay.html?cast=${encodeURIComponent(`rec/${name}`)}`, {
      waitUntil: 'load',
      timeout: 15000,
    });
    if (!r2 || r2.status() !== 200) throw new Error(`replay.html?cast=: HTTP ${r2 && r2.status()}`);
    let shown = null;
    const end = Date.now() + 20000;
    for (;;) {
      shown = await page.evaluate(() => {
        const pre = document.querySelector('.ap-term-text');
        if (!pre) return null;
        const rows = [...pre.querySelectorAll('.ap-line')].map((l) => l.textContent.replace(/\s+$/, ''));
        while (rows.length && rows[rows.length - 1] === '') rows.pop();
        const p = window.player;
        // SGR 1;32 of the first line: bold and green as the browser draws it
        const span = [...pre.querySelectorAll('.ap-line span')].find((e) => e.textContent.includes('wsgate'));
        const cs = span ? getComputedStyle(span) : null;
        return {
          rows,
          t: p ? p.getCurrentTime() : null,
          d: p ? p.getDuration() : null,
          weight: cs ? Number(cs.fontWeight) : null,
          color: cs ? cs.color : null,
        };
      });
      if (shown && JSON.stringify(shown.rows) === JSON.stringify(screen) && shown.d !== null && shown.t >= shown.d) break;
      if (Date.now() > end) break;
      await page.waitForTimeout(200);
    }
    const green = (c) => {
      const m = /rgba?\((\d+), (\d+), (\d+)/.exec(c || '');
      return !!m && Number(m[2]) > 2 * Number(m[1]) && Number(m[2]) > 2 * Number(m[3]);
    };
    ok = !!shown && JSON.stringify(shown.rows) === JSON.stringify(screen) && shown.d !== null &&
      shown.t >= shown.d && shown.weight >= 600 && green(shown.color);
    detail = ok
      ? `${name}: ${events.length} events; the player shows ${screen.length} lines at ` +
        `${shown.t.toFixed(2)}/${shown.d.toFixed(2)} s, the first bold (${shown.weight}) in ${shown.color}`
      : `player: ${JSON.stringify(shown)}, expected rows ${JSON.stringify(screen)} at the end, ` +
        'the first bold and green';
  } catch (e) {
    detail = String(e.message || e);
  }
  await page.screenshot({ path: join(ARTIFACTS, 'replay.png'), fullPage: true }).catch(() => {});
  writeFileSync(join(ARTIFACTS, 'replay.log'), lines.join('\n') + '\n');
  await page.close();
  if (!ok && lines.length) detail += `\n# page log:\n# ${lines.slice(-10).join('\n# ')}`;
  return { ok, detail };
}

// Query string of index.html?test=hosts for the host-routed tls listener.
function hostsQuery() {
  const port = env.HOSTS_PORT;
  const q = (k, v) => `&${k}=${encodeURIComponent(v)}`;
  return (
    q('t', `wss://a.test:${port}/x|backend A`) +
    q('t', `wss://x.b.test:${port}/x|backend B`) +
    q('t', `wss://deep.x.b.test:${port}/x|backend B`) +
    q('refuse', `wss://c.test:${port}/x`) +
    q('refuse', `wss://b.test:${port}/x`)
  );
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
        '--host-resolver-rules=MAP *.test 127.0.0.1',
        ...(env.HOSTS_SPKI ? [`--ignore-certificate-errors-spki-list=${env.HOSTS_SPKI}`] : []),
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
      case 'hosts':
        r = env.HOSTS_PORT
          ? await pageScenario(ctx, s, 'hosts', '', hostsQuery(), 60000)
          : { ok: false, detail: 'no HOSTS_PORT' };
        break;
      case 'replay':
        r = await replayScenario(ctx);
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
