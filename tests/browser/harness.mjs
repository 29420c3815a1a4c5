// What the browser tests share: the chat server as a child process on a
// free port, Chromium, and helpers that drive the page by its test ids.
// Everything stays on 127.0.0.1.
//
// BROWSER_TEST_WEB_DIR=web (for working on the page): every context the
// tests open serves the page's files from that folder instead of the
// server's built-in copy (headers, CSP included, stay the server's), so a
// change to web/ needs no rebuild. The full run leaves it unset.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, readFile } from 'node:fs/promises';
import { once } from 'node:events';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SERVER = process.env.CHAT_SERVER_BIN || path.join(REPO, 'target', 'release', 'rfc6455');
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
export const WAIT = 15_000; // the longest any single step may wait
export const TLS_CERT = process.env.CHAT_TLS_CERT;
export const TLS_KEY = process.env.CHAT_TLS_KEY;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Whatever happens, the server does not outlive the test, and the test does
// not outlive its budget (a hung browser call still ends here).
let running = null;
process.on('exit', () => running?.kill());

/** Ends the test file's process after `seconds`, whatever hangs. */
export function budget(seconds) {
  setTimeout(() => {
    console.error(`browser test: still running after ${seconds} s, giving up`);
    process.exit(1);
  }, seconds * 1000).unref();
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** The chat server as a child process, its output kept for failure reports. */
export class Server {
  /** `tls`: serve https and wss:// with the test's certificate; `extra`:
   * more arguments for `rfc6455 chat`. */
  constructor(port, db, tls, extra = []) {
    this.port = port;
    this.db = db;
    this.tls = tls;
    this.extra = extra;
    this.base = `${tls ? 'https' : 'http'}://127.0.0.1:${port}/`;
    this.log = '';
    this.proc = null;
  }

  async start() {
    const args = ['chat', '--listen', `127.0.0.1:${this.port}`, '--db', this.db];
    if (this.tls) args.push('--tls-cert', TLS_CERT, '--tls-key', TLS_KEY);
    args.push(...this.extra);
    const proc = spawn(SERVER, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    running = this;
    this.exit = once(proc, 'exit');
    const keep = (chunk) => { this.log = (this.log + chunk).slice(-20_000); };
    proc.stdout.on('data', keep);
    proc.stderr.on('data', keep);
    const deadline = Date.now() + WAIT;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error(`server exited with ${proc.exitCode}:\n${this.log}`);
      try {
        const res = await fetch(`${this.base}healthz`, { signal: AbortSignal.timeout(1000) });
        if (res.status === 200) return;
      } catch { /* not listening yet */ }
      await sleep(100);
    }
    throw new Error(`server not healthy after ${WAIT} ms:\n${this.log}`);
  }

  /** SIGTERM (the server saves its history first) and wait for the exit. */
  async stop() {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), WAIT);
    const [code, signal] = await this.exit;
    clearTimeout(timer);
    assert.equal(signal, null, `server did not exit on SIGTERM within ${WAIT} ms:\n${this.log}`);
    assert.equal(code, 0, `server exited with ${code} on SIGTERM:\n${this.log}`);
  }

  kill() {
    if (!this.proc) return;
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
    this.proc.stdout.destroy();
    this.proc.stderr.destroy();
  }
}

/** Chromium, headless, with nothing of its own on the network; `extra`:
 * more command-line switches. */
export async function launchChromium(extra = []) {
  const dir = process.env.BROWSER_TEST_WEB_DIR;
  // A page the test fulfils has no address of its own: Chromium would
  // take it for a public one and block its WebSocket to 127.0.0.1.
  if (dir) extra = [...extra, '--disable-features=LocalNetworkAccessChecks'];
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    timeout: WAIT,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', ...extra],
  });
  if (dir) {
    const newContext = browser.newContext.bind(browser);
    browser.newContext = async (opts) => {
      const ctx = await newContext(opts);
      await ctx.route(/^https?:\/\/127\.0\.0\.1:\d+\/([a-z]+\.(js|css|html))?$/, async (route) => {
        const url = new URL(route.request().url());
        const name = url.pathname === '/' ? 'index.html' : url.pathname.slice(1);
        const real = await route.fetch();
        const headers = { ...real.headers(), 'content-type': name.endsWith('.js') ? 'text/javascript' : name.endsWith('.css') ? 'text/css' : 'text/html' };
        delete headers['content-length'];
        let body = await readFile(path.join(REPO, dir, name), 'utf8');
        // The server's sign-in mode (src/chat/http.rs, index_html): `token`
        // with --jwt-secret, `open` or `required` with accounts.
        const mode = name === 'index.html' && /<meta name="chat-auth" content="([a-z]+)">/.exec(await real.text());
        if (mode) body = body.replace('content="nick"', `content="${mode[1]}"`);
        await route.fulfill({ status: 200, headers, body });
      });
      return ctx;
    };
  }
  return browser;
}

/** Runs `body({ server, browser, problems })` against a fresh server
 * (started with `extra` arguments) and browser, in a temporary folder
 * named after `name`; a failure carries the server's log. */
export async function withChat(name, extra, body) {
  const tmp = await mkdtemp(path.join(os.tmpdir(), `chat-browser-${name}-`));
  const server = new Server(await freePort(), path.join(tmp, 'chat.db'), false, extra);
  let browser;
  try {
    await server.start();
    browser = await launchChromium();
    await body({ server, browser, problems: [] });
  } catch (e) {
    e.message += `\n--- server log (last part) ---\n${server.log}`;
    throw e;
  } finally {
    if (browser) await browser.close().catch(() => {});
    server.kill();
    await rm(tmp, { recursive: true, force: true });
  }
}

// --- page helpers -------------------------------------------------------------

export const id = (page, testId) => page.getByTestId(testId);

/** Records the page's uncaught errors and CSP refusals in `problems`. */
export function watchProblems(page, who, problems) {
  page.on('pageerror', (e) => problems.push(`${who}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Uncaught/i.test(m.text())) problems.push(`${who}: ${m.text()}`);
  });
}

export async function statusIs(page, state) {
  await id(page, 'status').and(page.locator(`[data-state="${state}"]`)).waitFor({ timeout: WAIT });
  assert.equal(await id(page, 'status').textContent(), state);
}

/** Clicks something in the side panel, opening the drawer first on a phone. */
export async function sideClick(page, locator) {
  const menu = id(page, 'menu-toggle');
  if (await menu.isVisible() && (await menu.getAttribute('aria-expanded')) !== 'true') await menu.click();
  await locator.click({ timeout: WAIT });
}

export const openRoom = (page, room) => sideClick(page, id(page, `room-${room}`).locator('button.open'));
export const openDm = (page, nick) => sideClick(page, id(page, `dm-${nick}`).locator('button.open'));

/** The messages in view: [{id, from, state, text}]. */
export function shown(page) {
  return page.$$eval('[data-testid="messages"] [data-testid="message"]', (els) =>
    els.map((e) => ({ id: e.dataset.id, from: e.dataset.from, state: e.dataset.state, text: e.querySelector('.text').textContent })));
}

/** Waits until a message with this text (and sender, state) is in view; returns it. */
export async function waitMessage(page, text, { from, state = 'sent' } = {}) {
  const handle = await page.waitForFunction(([text, from, state]) => {
    const els = document.querySelectorAll('[data-testid="messages"] [data-testid="message"]');
    for (const e of els) {
      if (e.querySelector('.text').textContent === text && (!from || e.dataset.from === from) && e.dataset.state === state) {
        return { id: e.dataset.id, from: e.dataset.from, state: e.dataset.state, text };
      }
    }
    return null;
  }, [text, from, state], { timeout: WAIT });
  return handle.jsonValue();
}

export function assertNoDuplicates(list, who) {
  const ids = list.map((m) => m.id);
  assert.ok(ids.every((i) => i !== undefined && /^\d+$/.test(i)), `${who}: every message has a numeric data-id: ${JSON.stringify(list)}`);
  assert.equal(new Set(ids).size, ids.length, `${who}: duplicate ids shown: ${ids}`);
  const sorted = [...ids].map(Number).sort((a, b) => a - b);
  assert.deepEqual(ids.map(Number), sorted, `${who}: messages in id order`);
}

/** Opens the DM with `nick` from the member list: their menu, then
 * "Send a message". */
export async function messageUser(page, nick) {
  await sideClick(page, id(page, `user-${nick}`).locator('button'));
  await id(page, 'menu-dm').click();
}

export async function send(page, text) {
  await id(page, 'composer').fill(text);
  await id(page, 'send').click();
}

export async function signIn(page, base, nick) {
  await page.goto(base, { timeout: WAIT });
  await id(page, 'nick-input').fill(nick, { timeout: WAIT });
  await id(page, 'nick-submit').click();
  await statusIs(page, 'online');
  assert.equal(await id(page, 'me').textContent(), nick);
}

/** Two users, alice (desktop) and bob (phone), signed in on `server`. */
export async function pair(browser, server, problems, { bobMobile = true } = {}) {
  const actx = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  const bctx = await browser.newContext(bobMobile
    ? { viewport: { width: 390, height: 760 }, isMobile: true, hasTouch: true }
    : { viewport: { width: 1100, height: 720 } });
  for (const ctx of [actx, bctx]) ctx.setDefaultTimeout(WAIT);
  const alice = await actx.newPage();
  const bob = await bctx.newPage();
  watchProblems(alice, 'alice', problems);
  watchProblems(bob, 'bob', problems);
  await signIn(alice, server.base, 'alice');
  await signIn(bob, server.base, 'bob');
  await id(alice, 'user-bob').waitFor();
  return { alice, bob, actx, bctx };
}
