/* e2e.js - WebSocket checks run inside a real browser against wsgate.
 *
 * index.html?test=NAME&ws=ROUTE runs one scenario and stores its outcome in
 * window.__result = { ok, test, checks: [{ name, ok, detail }], error }:
 *   echo       binary and text messages of many sizes through an echo
 *              backend; every byte is compared; a burst checks ordering;
 *              the close handshake ends with code 1000.
 *   echo-b64   the same over the "base64" subprotocol (text frames).
 *   origin     the route refuses this page's Origin: the socket must fail
 *              (error and close, never open).
 *   heartbeat  open, echo, stay idle for `hold` seconds while the gateway
 *              pings, then echo again on the same socket.
 *   static     (page served by wsgate's web_root) Content-Type, HEAD, 304,
 *              301 to a directory's slash, 404, 405 as the browser sees them.
 *   hosts      routing by Host: each &t=URL|TAG (wss:// URLs that differ in
 *              host name only) must reach the backend that greets with
 *              TAG "\r\n" and then echoes; each &refuse=URL must fail to open
 *              (no route answers that host).
 * The backend relays bytes, not messages: the bytes received (in whatever
 * frames the gateway cuts them into) must equal the bytes sent. */
'use strict';

(function () {
  const params = new URLSearchParams(location.search);
  const logEl = document.getElementById('log');
  const checks = [];

  function log(msg) {
    logEl.textContent += msg + '\n';
  }

  function check(name, ok, detail) {
    checks.push({ name, ok: !!ok, detail: detail || '' });
    log((ok ? 'ok   ' : 'FAIL ') + name + (detail ? ' (' + detail + ')' : ''));
  }

  function wsUrl(route) {
    if (/^wss?:\/\//.test(route)) return route;
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    return scheme + location.host + (route.startsWith('/') ? route : '/' + route);
  }

  /* Deterministic pseudo-random bytes (xorshift32). */
  function bytes(n, seed) {
    const out = new Uint8Array(n);
    let x = (seed * 2654435761) >>> 0 || 1;
    for (let i = 0; i < n; i++) {
      x ^= x << 13; x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5; x >>>= 0;
      out[i] = x & 0xff;
    }
    return out;
  }

  function firstDiff(a, b) {
    const n = Math.min(a.length, b.length);
    for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
    return a.length === b.length ? -1 : n;
  }

  function toBase64(u8) {
    let s = '';
    for (let i = 0; i < u8.length; i += 0x8000)
      s += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000));
    return btoa(s);
  }

  function fromBase64(s) {
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  /* A WebSocket whose received bytes are a stream read with expect(n). */
  class Conn {
    constructor(url, protocols) {
      this.chunks = [];
      this.avail = 0;
      this.waiter = null;
      this.closed = null; /* { code, reason, wasClean } once closed */
      this.errored = false;
      this.opened = false;
      this.textFrames = 0;
      this.binaryFrames = 0;
      this.ws = new WebSocket(url, protocols || []);
      this.ws.binaryType = 'arraybuffer';
      this.ready = new Promise((resolve, reject) => {
        this.ws.onopen = () => { this.opened = true; resolve(); };
        this.ws.onerror = () => { this.errored = true; };
        this.ws.onclose = (ev) => {
          this.closed = { code: ev.code, reason: ev.reason, wasClean: ev.wasClean };
          if (!this.opened) reject(new Error('closed before open: code ' + ev.code));
          if (this.onclosed) this.onclosed(this.closed);
          this.wake();
        };
      });
      this.ws.onmessage = (ev) => {
        let u8;
        if (typeof ev.data === 'string') {
          this.textFrames++;
          u8 = this.ws.protocol === 'base64' ? fromBase64(ev.data) : new TextEncoder().encode(ev.data);
        } else {
          this.binaryFrames++;
          u8 = new Uint8Array(ev.data);
        }
        if (u8.length) {
          this.chunks.push(u8);
          this.avail += u8.length;
        }
        this.wake();
      };
    }

    wake() {
      if (this.waiter) this.waiter();
    }

    sendBytes(u8) {
      if (this.ws.protocol === 'base64') this.ws.send(toBase64(u8));
      else this.ws.send(u8);
    }

    /* The next n received bytes, or an error after timeoutMs. */
    async expect(n, timeoutMs) {
      const deadline = Date.now() + (timeoutMs || 20000);
      while (this.avail < n) {
        if (this.closed) throw new Error('closed (code ' + this.closed.code + ') with ' + this.avail + '/' + n + ' bytes');
        const left = deadline - Date.now();
        if (left <= 0) throw new Error('timeout with ' + this.avail + '/' + n + ' bytes');
        await new Promise((resolve) => {
          const t = setTimeout(resolve, left);
          this.waiter = () => { clearTimeout(t); resolve(); };
        });
        this.waiter = null;
      }
      const out = new Uint8Array(n);
      let off = 0;
      while (off < n) {
        const c = this.chunks[0];
        const take = Math.min(c.length, n - off);
        out.set(c.subarray(0, take), off);
        off += take;
        if (take === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(take);
      }
      this.avail -= n;
      return out;
    }

    async close(code) {
      if (this.closed) return this.closed;
      const done = new Promise((resolve) => { this.onclosed = resolve; });
      this.ws.close(code || 1000);
      return Promise.race([done, sleep(10000).then(() => null)]);
    }
  }

  async function echoOne(conn, name, sent) {
    conn.sendBytes(sent);
    const got = await conn.expect(sent.length, 30000);
    const d = firstDiff(sent, got);
    check(name, d < 0, d < 0 ? sent.length + ' bytes' : 'first difference at byte ' + d);
  }

  const BIN_SIZES = [1, 2, 125, 126, 127, 128, 1000, 4096, 65535, 65536, 65537, 262144, 1048576, 3 * 1048576 + 7];
  const TEXTS = [
    'a',
    'hello, wsgate',
    'h\u00e9llo w\u00f6rld \u00df',
    '\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8',
    'emoji \ud83d\ude00\ud83c\udf89 and \u{1f680}',
    'x'.repeat(125),
    'y'.repeat(126),
    'z'.repeat(70000),
    Array.from({ length: 50000 }, (_, i) => String.fromCodePoint(0x20 + (i * 7919) % 0x2f00)).join(''),
  ];

  async function testEcho(route, protocols) {
    const conn = new Conn(wsUrl(route), protocols);
    await conn.ready;
    check('open', true, 'protocol "' + conn.ws.protocol + '"');
    const wantExt = params.get('ext');
    if (wantExt)
      check('extension negotiated', conn.ws.extensions === wantExt, JSON.stringify(conn.ws.extensions));
    if (protocols && protocols.length)
      check('subprotocol chosen', conn.ws.protocol === protocols[0], conn.ws.protocol);
    const b64 = conn.ws.protocol === 'base64';
    const sizes = b64 ? BIN_SIZES.filter((n) => n <= 1048576) : BIN_SIZES;

    for (const n of sizes) await echoOne(conn, 'binary ' + n, bytes(n, n));
    if (!b64) {
      const enc = new TextEncoder();
      for (let i = 0; i < TEXTS.length; i++) {
        const sent = enc.encode(TEXTS[i]);
        conn.ws.send(TEXTS[i]);
        const got = await conn.expect(sent.length, 30000);
        const d = firstDiff(sent, got);
        check('text ' + i + ' (' + sent.length + ' bytes utf-8)', d < 0, d < 0 ? '' : 'first difference at byte ' + d);
      }
      conn.ws.send(''); /* an empty message carries no bytes */
    }

    /* A burst without waiting: order and completeness. */
    const parts = [];
    let total = 0;
    for (let i = 0; i < 60; i++) {
      const n = 1 + ((i * 7919) % 20000);
      const u8 = bytes(n, 1000 + i);
      parts.push(u8);
      total += n;
      if (!b64 && i % 3 === 1) {
        /* A text message of the same bytes' ASCII rendering. */
        let s = '';
        for (const b of u8) s += String.fromCharCode(0x21 + (b % 90));
        const t = new TextEncoder().encode(s);
        parts[parts.length - 1] = t;
        conn.ws.send(s);
      } else {
        conn.sendBytes(u8);
      }
    }
    total = parts.reduce((a, p) => a + p.length, 0);
    const sent = new Uint8Array(total);
    let off = 0;
    for (const p of parts) { sent.set(p, off); off += p.length; }
    const got = await conn.expect(total, 30000);
    const d = firstDiff(sent, got);
    check('burst of 60 messages', d < 0, d < 0 ? total + ' bytes' : 'first difference at byte ' + d);
    check('frame type', b64 ? conn.binaryFrames === 0 : conn.textFrames === 0,
      conn.binaryFrames + ' binary, ' + conn.textFrames + ' text frames');

    const c = await conn.close(1000);
    check('close handshake', c && c.code === 1000 && c.wasClean, c ? 'code ' + c.code + ', clean ' + c.wasClean : 'no close event');
    check('no extra bytes', conn.avail === 0, conn.avail + ' unexpected bytes');
  }

  async function testOrigin(route) {
    const conn = new Conn(wsUrl(route));
    let opened = false;
    try {
      await Promise.race([conn.ready, sleep(15000).then(() => { throw new Error('no outcome'); })]);
      opened = true;
    } catch (e) {
      /* expected */
    }
    check('not opened', !opened && !conn.opened);
    check('error event', conn.errored);
    check('close event', conn.closed !== null, conn.closed ? 'code ' + conn.closed.code : '');
    check('abnormal closure 1006', conn.closed && conn.closed.code === 1006);
  }

  async function testHeartbeat(route, holdSeconds) {
    const conn = new Conn(wsUrl(route));
    await conn.ready;
    check('open', true);
    await echoOne(conn, 'echo before idling', bytes(1024, 1));
    let closedDuring = null;
    conn.onclosed = (c) => { closedDuring = c; };
    await sleep(holdSeconds * 1000);
    check('open after ' + holdSeconds + ' s idle', conn.ws.readyState === WebSocket.OPEN && !closedDuring,
      closedDuring ? 'closed with code ' + closedDuring.code : 'readyState ' + conn.ws.readyState);
    conn.onclosed = null;
    await echoOne(conn, 'echo after idling', bytes(4096, 2));
    const c = await conn.close(1000);
    check('close handshake', c && c.code === 1000, c ? 'code ' + c.code : 'no close event');
  }

  /* Host routing: the greeting tells which backend answered; an echo of
   * pseudo-random bytes follows on the same socket, compared byte for byte. */
  async function testHosts(targets, refused) {
    const enc = new TextEncoder();
    let seed = 7;
    for (const t of targets) {
      const bar = t.lastIndexOf('|');
      const url = t.slice(0, bar);
      const tag = enc.encode(t.slice(bar + 1) + '\r\n');
      const conn = new Conn(url);
      await conn.ready;
      const got = await conn.expect(tag.length, 15000);
      const d = firstDiff(tag, got);
      check(url + ' greeting', d < 0,
        JSON.stringify(new TextDecoder().decode(got)) + ', expected ' + JSON.stringify(t.slice(bar + 1) + '\r\n'));
      await echoOne(conn, url + ' echo', bytes(4096 + seed, seed++));
      const c = await conn.close(1000);
      check(url + ' close', c && c.code === 1000, c ? 'code ' + c.code : 'no close event');
      check(url + ' no extra bytes', conn.avail === 0, conn.avail + ' unexpected bytes');
    }
    for (const url of refused) {
      const conn = new Conn(url);
      let opened = false;
      try {
        await Promise.race([conn.ready, sleep(15000).then(() => { throw new Error('no outcome'); })]);
        opened = true;
      } catch (e) {
        /* expected */
      }
      check(url + ' refused', !opened && !conn.opened && conn.closed && conn.closed.code === 1006,
        conn.closed ? 'code ' + conn.closed.code : 'no close event');
    }
  }

  /* The page's own origin is wsgate: check web_root answers as a browser
   * sees them (types it enforces for modules and wasm, HEAD, 304, 301, 404,
   * 405, an encoded traversal the URL parser leaves alone). */
  async function testStatic() {
    const get = (p, opt) => fetch(p, Object.assign({ cache: 'no-store', redirect: 'follow' }, opt || {}));
    const types = [
      ['index.html', 'text/html'],
      ['e2e.js', 'text/javascript'],
      ['static/sample.css', 'text/css'],
      ['static/sample.json', 'application/json'],
      ['static/sample.svg', 'image/svg+xml'],
      ['static/empty.wasm', 'application/wasm'],
      ['static/mod.mjs', 'text/javascript'],
    ];
    for (const [p, type] of types) {
      const r = await get(p);
      const body = new Uint8Array(await r.arrayBuffer());
      const ct = r.headers.get('content-type') || '';
      check('GET ' + p, r.status === 200 && ct.startsWith(type) &&
        Number(r.headers.get('content-length')) === body.length &&
        r.headers.get('x-content-type-options') === 'nosniff' && !!r.headers.get('last-modified'),
      r.status + ' ' + ct + ', ' + body.length + ' bytes');
    }
    let r = await get('e2e.js', { method: 'HEAD' });
    const headLen = Number(r.headers.get('content-length'));
    const headBody = (await r.arrayBuffer()).byteLength;
    check('HEAD e2e.js', r.status === 200 && headLen > 0 && headBody === 0, r.status + ', length ' + headLen);

    const mod = await import(new URL('static/mod.mjs', location.href).href);
    check('ES module import', mod.answer === 42);
    let wasmOk = false;
    try {
      await WebAssembly.instantiateStreaming(fetch('static/empty.wasm'));
      wasmOk = true;
    } catch (e) {
      wasmOk = String(e);
    }
    check('WebAssembly.instantiateStreaming', wasmOk === true, wasmOk === true ? '' : wasmOk);

    r = await get('static/');
    check('directory index', r.status === 200 && (await r.text()).includes('static directory index'), String(r.status));
    r = await get('static');
    check('directory without slash redirects', r.status === 200 && r.redirected && r.url.endsWith('/static/'), r.url);

    r = await get('e2e.js');
    const lm = r.headers.get('last-modified');
    r = await get('e2e.js', { headers: { 'If-Modified-Since': lm } });
    check('If-Modified-Since -> 304', r.status === 304, String(r.status));
    r = await get('e2e.js', { headers: { 'If-Modified-Since': 'Thu, 01 Jan 1970 00:00:00 GMT' } });
    check('older If-Modified-Since -> 200', r.status === 200, String(r.status));

    r = await get('no-such-file.html');
    check('missing -> 404', r.status === 404, String(r.status));
    r = await get('index.html', { method: 'POST', body: 'x' });
    check('POST -> 405 with Allow', r.status === 405 && /GET/.test(r.headers.get('allow') || ''),
      r.status + ' allow=' + r.headers.get('allow'));
    r = await get('static/..%2F..%2Fetc%2Fpasswd');
    check('encoded traversal refused', r.status === 403 || r.status === 404, String(r.status));
    r = await get('%2e%2e%2f%2e%2e%2fetc%2fpasswd');
    check('encoded dot-dot-slash refused', r.status === 403 || r.status === 404, String(r.status));
  }

  async function main() {
    const test = params.get('test') || 'echo';
    const route = params.get('ws') || '/echo';
    const result = { test, ok: false, checks, error: null };
    try {
      if (test === 'echo') await testEcho(route, []);
      else if (test === 'echo-b64') await testEcho(route, ['base64']);
      else if (test === 'origin') await testOrigin(route);
      else if (test === 'static') await testStatic();
      else if (test === 'hosts') await testHosts(params.getAll('t'), params.getAll('refuse'));
      else if (test === 'heartbeat') await testHeartbeat(route, Number(params.get('hold') || 5));
      else throw new Error('unknown test ' + test);
    } catch (e) {
      result.error = String(e && e.message ? e.message : e);
      log('ERROR ' + result.error);
    }
    result.ok = !result.error && checks.length > 0 && checks.every((c) => c.ok);
    const st = document.getElementById('status');
    st.textContent = result.ok ? 'pass' : 'fail';
    st.className = result.ok ? 'pass' : 'fail';
    window.__result = result;
  }

  main();
})();
