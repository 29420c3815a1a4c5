// End-to-end: the chat server and its web UI (web/) in a real Chromium,
// over http and ws://, then again over https and wss:// (the server started
// with --tls-cert/--tls-key); and a long absence, whose resume says `gap`
// (the server started with --no-rate-limit); and a room of more members
// than one page (count, "more", the search box). Run through scripts/browser-test.sh, which
// installs Chromium, builds the server and makes the certificate first
// (CHAT_TLS_CERT, CHAT_TLS_KEY; NODE_EXTRA_CA_CERTS so that node's fetch
// trusts it). Everything stays on 127.0.0.1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  CHROMIUM, REPO, SERVER, Server, TLS_CERT, TLS_KEY, WAIT, assertNoDuplicates, budget, freePort, id, launchChromium, messageUser, openDm, openRoom, send, shown, sideClick, signIn, sleep, statusIs, waitMessage, watchProblems, withChat,
} from './harness.mjs';

budget(300);

// --- the scenario ---------------------------------------------------------------

test('two users chat through the web UI in Chromium', { timeout: 120_000 }, (t) => scenario(t, { tls: false }));

test('the same over https and wss:// (chat --tls-cert --tls-key)', { timeout: 120_000 }, (t) => {
  assert.ok(TLS_CERT && TLS_KEY, 'CHAT_TLS_CERT and CHAT_TLS_KEY name the certificate: run scripts/browser-test.sh');
  return scenario(t, { tls: true });
});

/** The whole scenario, over http and ws:// or over https and wss://. */
async function scenario(t, { tls }) {
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'chat-browser-'));
  const port = await freePort();
  const server = new Server(port, path.join(tmp, 'chat.db'), tls);
  const base = server.base;
  // Files this run writes under target/: browser-alice.png, or
  // browser-tls-alice.png for the https run.
  const out = (name) => path.join(REPO, 'target', `browser-${tls ? 'tls-' : ''}${name}`);
  let browser;
  const sockets = []; // the URL of every WebSocket the pages opened
  const problems = []; // uncaught page errors and CSP refusals
  // Every WebSocket frame both pages saw, kept in target/browser-frames.log;
  // the last ones go into a failure's message.
  const frames = [];
  const started = Date.now();
  const logFrame = (line) => frames.push(`${String(Date.now() - started).padStart(6)} ms  ${line}`);
  // Steps run in order and the first failure ends the test.
  const step = async (name, fn) => {
    const started = Date.now();
    try {
      await fn();
    } catch (e) {
      e.message = `step "${name}" failed: ${e.message}`;
      throw e;
    }
    t.diagnostic(`ok: ${name} (${Date.now() - started} ms)`);
  };
  try {
    await server.start();
    // The https run's certificate is self-signed.
    browser = await launchChromium(tls ? ['--ignore-certificate-errors'] : []);
    // Two users, two separate profiles; bob on a phone-sized screen.
    const ignoreHTTPSErrors = tls;
    const aliceCtx = await browser.newContext({ viewport: { width: 1100, height: 720 }, ignoreHTTPSErrors });
    const bobCtx = await browser.newContext({ viewport: { width: 390, height: 760 }, isMobile: true, hasTouch: true, ignoreHTTPSErrors });
    for (const ctx of [aliceCtx, bobCtx]) {
      ctx.setDefaultTimeout(WAIT);
      ctx.setDefaultNavigationTimeout(WAIT);
    }
    const alice = await aliceCtx.newPage();
    const bob = await bobCtx.newPage();
    for (const [who, page] of [['alice', alice], ['bob', bob]]) {
      page.on('websocket', (ws) => {
        sockets.push(ws.url());
        logFrame(`${who} open ${ws.url()}`);
        ws.on('framesent', (f) => logFrame(`${who} > ${f.payload}`));
        ws.on('framereceived', (f) => logFrame(`${who} < ${f.payload}`));
        ws.on('close', () => logFrame(`${who} closed`));
      });
      watchProblems(page, who, problems);
      page.on('console', (m) => {
        if (m.text().startsWith('chat:')) logFrame(`${who} ${m.text()}`);
      });
    }

    // The WebSocket handshake responses alice's Chromium received, through
    // the DevTools protocol: they show what permessage-deflate it agreed to.
    const handshakes = [];
    const cdp = await aliceCtx.newCDPSession(alice);
    await cdp.send('Network.enable');
    cdp.on('Network.webSocketHandshakeResponseReceived', (e) => handshakes.push(e.response));

    let hello;
    await step('1. alice and bob meet in general; a message goes across', async () => {
      await signIn(alice, base, 'alice');
      await signIn(bob, base, 'bob');
      await id(alice, 'room-general').waitFor({ timeout: WAIT });
      await id(bob, 'room-general').waitFor({ state: 'attached', timeout: WAIT });
      await id(alice, 'user-bob').waitFor({ timeout: WAIT }); // presence delta
      await id(bob, 'user-alice').waitFor({ state: 'attached', timeout: WAIT }); // full roster
      // Sent from inside the page so that the DOM is read in the same task,
      // before any answer from the server can be handled: shown at once, pending.
      const text = 'hello bob <b>not bold</b>';
      const rightAway = await alice.evaluate((text) => {
        document.querySelector('[data-testid="composer"]').value = text;
        document.querySelector('[data-testid="send"]').click();
        const els = document.querySelectorAll('[data-testid="messages"] [data-testid="message"]');
        const last = els[els.length - 1];
        return last && { state: last.dataset.state, from: last.dataset.from, text: last.querySelector('.text').textContent };
      }, text);
      assert.deepEqual(rightAway, { state: 'pending', from: 'alice', text });
      hello = await waitMessage(alice, text, { from: 'alice', state: 'sent' });
      const got = await waitMessage(bob, 'hello bob <b>not bold</b>', { from: 'alice' });
      assert.equal(got.id, hello.id, 'both see the same id');
      assert.equal(await bob.locator('[data-testid="messages"] b').count(), 0, 'text is not parsed as HTML');
      const fromBob = 'hi alice';
      await send(bob, fromBob);
      await waitMessage(bob, fromBob, { from: 'bob' });
      await waitMessage(alice, fromBob, { from: 'bob' });
      assertNoDuplicates(await shown(alice), 'alice');
      assertNoDuplicates(await shown(bob), 'bob');
      assert.equal((await shown(bob)).length, 2);
    });

    await step(`1a. the page is ${base} and its WebSockets are ${tls ? 'wss' : 'ws'}://`, async () => {
      assert.equal(alice.url(), base);
      assert.ok(sockets.length >= 2, `both pages opened a WebSocket: ${sockets}`);
      const scheme = tls ? 'wss' : 'ws';
      for (const url of sockets) assert.equal(url, `${scheme}://127.0.0.1:${port}/ws`);
    });

    await step('1b. Chromium negotiated permessage-deflate and reads compressed frames', async () => {
      const upgrade = handshakes.find((r) => r.status === 101);
      assert.ok(upgrade, `a 101 response was seen: ${JSON.stringify(handshakes)}`);
      const ext = Object.entries(upgrade.headers)
        .filter(([k]) => k.toLowerCase() === 'sec-websocket-extensions')
        .map(([, v]) => v).join(', ');
      assert.match(ext, /^permessage-deflate\b/, `the 101 accepted deflate: ${JSON.stringify(upgrade.headers)}`);
      assert.match(ext, /server_no_context_takeover/, 'one compressed broadcast fits every recipient');
      t.diagnostic(`Chromium's 101: Sec-WebSocket-Extensions: ${ext}`);
      // A message long enough to be compressed (the threshold is 64 bytes),
      // and repetitive enough that it shrinks a lot: it must arrive intact.
      const long = 'compress me '.repeat(40).trim();
      await send(alice, long);
      await waitMessage(bob, long, { from: 'alice' });
      const metrics = await (await fetch(`${base}metrics`)).text();
      const n = Number(/^chat_connections_deflate_total (\d+)$/m.exec(metrics)?.[1]);
      assert.ok(n >= 2, `both browsers negotiated deflate (server counted ${n})`);
    });

    await step('2. a DM from alice reaches only the conversation with bob', async () => {
      await messageUser(alice, 'bob');
      assert.equal(await id(alice, 'title').textContent(), '@bob');
      await send(alice, 'psst, bob');
      await waitMessage(alice, 'psst, bob', { from: 'alice', state: 'sent' });
      // bob is still in general: the DM shows up as an unread conversation.
      const dm = id(bob, 'dm-alice');
      await dm.waitFor({ state: 'attached', timeout: WAIT });
      await dm.getByTestId('unread').and(bob.getByText('1', { exact: true })).waitFor({ state: 'attached', timeout: WAIT });
      assert.ok(!(await shown(bob)).some((m) => m.text.includes('psst')), 'the DM is not in general (bob)');
      await openDm(bob, 'alice');
      assert.equal(await id(bob, 'title').textContent(), '@alice');
      await waitMessage(bob, 'psst, bob', { from: 'alice' });
      assert.equal((await shown(bob)).length, 1, 'the DM conversation holds just the DM');
      assert.equal(await dm.getByTestId('unread').textContent(), '', 'reading it clears the unread count');
      await openRoom(alice, 'general');
      await waitMessage(alice, 'hi alice', { from: 'bob' });
      assert.ok(!(await shown(alice)).some((m) => m.text.includes('psst')), 'the DM is not in general (alice)');
      await openRoom(bob, 'general');
      await waitMessage(bob, 'hi alice', { from: 'bob' });
      assert.ok(!(await shown(bob)).some((m) => m.text.includes('psst')), 'the DM is not in general (bob)');
    });

    await step('3. bob types; alice sees "bob is typing"', async () => {
      // Typing for 2.5 s: the UI sends at most one `typing` per 2 s, and bob's
      // last one (from step 1) may be recent.
      await id(bob, 'composer').pressSequentially('still typing, wait', { delay: 140 });
      await id(alice, 'typing').and(alice.getByText('bob is typing')).waitFor({ timeout: WAIT });
      await id(bob, 'composer').fill('');
      // It goes away by itself after a few seconds.
      await alice.waitForFunction(() => document.querySelector('[data-testid="typing"]').textContent === '', null, { timeout: WAIT });
    });

    await step('4. bob reloads: history brings general back', async () => {
      const before = await shown(bob);
      await bob.reload({ timeout: WAIT });
      await statusIs(bob, 'online');
      assert.equal(await id(bob, 'me').textContent(), 'bob', 'bob keeps his nick across a reload');
      await waitMessage(bob, 'hi alice', { from: 'bob' });
      const after = await shown(bob);
      assert.deepEqual(after.map((m) => [m.id, m.from, m.text]), before.map((m) => [m.id, m.from, m.text]));
      assertNoDuplicates(after, 'bob');
      await id(alice, 'user-bob').waitFor({ timeout: WAIT });
    });

    await step('5. the server restarts: both resume, nothing lost or doubled', async () => {
      const aliceBefore = await shown(alice);
      const bobBefore = await shown(bob);
      assert.equal(aliceBefore.length, 3); // two greetings and the long one of 1b
      await server.stop();
      await statusIs(alice, 'reconnecting');
      await statusIs(bob, 'reconnecting');
      await server.start();
      await statusIs(alice, 'online');
      await statusIs(bob, 'online');
      await id(alice, 'user-bob').waitFor({ timeout: WAIT });
      await sleep(500); // room for a wrongly replayed message to show up
      const aliceAfter = await shown(alice);
      const bobAfter = await shown(bob);
      assertNoDuplicates(aliceAfter, 'alice');
      assertNoDuplicates(bobAfter, 'bob');
      assert.deepEqual(aliceAfter, aliceBefore, 'alice: same messages after the restart');
      assert.deepEqual(bobAfter, bobBefore, 'bob: same messages after the restart');

      await send(alice, 'still here?');
      const mine = await waitMessage(alice, 'still here?', { from: 'alice', state: 'sent' });
      const theirs = await waitMessage(bob, 'still here?', { from: 'alice' });
      assert.equal(theirs.id, mine.id);
      assert.ok(Number(mine.id) > Math.max(...aliceBefore.map((m) => Number(m.id))), 'ids go on after the restart');
      assertNoDuplicates(await shown(alice), 'alice');
      assertNoDuplicates(await shown(bob), 'bob');
      assert.equal((await shown(bob)).length, bobBefore.length + 1);
    });

    await step('6. screenshots', async () => {
      await mkdir(path.join(REPO, 'target'), { recursive: true });
      await alice.screenshot({ path: out('alice.png') });
      await bob.screenshot({ path: out('bob.png') });
      assert.deepEqual(problems, [], 'no page errors or CSP refusals');
    });
  } catch (e) {
    e.message += `\n--- last WebSocket frames (all in ${out('frames.log')}) ---\n${frames.slice(-80).join('\n')}\n--- server log (last part) ---\n${server.log}`;
    throw e;
  } finally {
    if (browser) await browser.close().catch(() => {});
    await mkdir(path.join(REPO, 'target'), { recursive: true });
    await writeFile(out('frames.log'), frames.join('\n') + '\n');
    server.kill();
    await rm(tmp, { recursive: true, force: true });
  }
}

// --- a long absence: the resume says `gap` -----------------------------------------

test('after a long absence the page shows the newest messages and pages back through the gap', { timeout: 120_000 }, (t) =>
  // No rate limit: carol posts 300 messages in a moment.
  withChat('gap', ['--no-rate-limit'], async ({ server, browser, problems }) => {
    const ctx = await browser.newContext({ viewport: { width: 1100, height: 720 } });
    ctx.setDefaultTimeout(WAIT);
    // Lets the test take alice's page off the network and back: every
    // WebSocket it opens is recorded, and while `__away` is set a new one
    // asks for a path the server answers with 404, so reconnects fail the
    // way they do when the network is gone (error, then close 1006). Same
    // origin, so the page's CSP (`connect-src 'self'`) allows the attempt.
    await ctx.addInitScript(() => {
      const Real = window.WebSocket;
      window.__sockets = [];
      window.__away = false;
      window.WebSocket = function (url, protocols) {
        const ws = new Real(window.__away ? String(url).replace(/\/ws$/, '/away') : url, protocols);
        window.__sockets.push(ws);
        return ws;
      };
      window.WebSocket.prototype = Real.prototype;
      Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
    });
    const alice = await ctx.newPage();
    watchProblems(alice, 'alice', problems);
    await signIn(alice, server.base, 'alice');

    // carol speaks the protocol from a page of her own.
    const carol = await (await browser.newContext()).newPage();
    await carol.goto(`${server.base}healthz`);
    const post = (texts) => carol.evaluate(async ([url, texts]) => {
      const ws = new WebSocket(url);
      const events = [];
      await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = fail; });
      ws.onmessage = (e) => events.push(JSON.parse(e.data));
      ws.send(JSON.stringify({ type: 'hello', nick: 'carol' }));
      texts.forEach((text, i) => ws.send(JSON.stringify({ type: 'msg', room: 'general', text, client_id: `c${i}` })));
      const deadline = Date.now() + 10_000;
      while (events.filter((e) => e.type === 'ack').length < texts.length && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      ws.close();
      return events.filter((e) => e.type === 'ack').length;
    }, [server.base.replace('http', 'ws') + 'ws', texts]);

    await t.test('alice sees what is posted while she is here', async () => {
      assert.equal(await post(['before 1', 'before 2']), 2);
      await waitMessage(alice, 'before 2', { from: 'carol' });
    });

    const long = (i) => `long ${i} ` + 'x'.repeat(1000);
    await t.test('while alice is away, 300 long messages (300 KB, more than one replay holds) are posted', async () => {
      await alice.evaluate(() => {
        window.__away = true;
        for (const ws of window.__sockets) ws.close();
      });
      await statusIs(alice, 'reconnecting');
      assert.equal(await post(Array.from({ length: 300 }, (_, i) => long(i))), 300);
      // At least one reconnect has been tried, and failed, while away.
      await alice.waitForFunction(() => window.__sockets.some((ws) => ws.url.endsWith('/away') && ws.readyState === 3));
      await statusIs(alice, 'reconnecting');
    });

    await t.test('back online, the page shows the newest messages and drops what the gap cut off', async () => {
      await alice.evaluate(() => {
        window.__away = false;
        window.dispatchEvent(new Event('online'));
      });
      await statusIs(alice, 'online');
      await waitMessage(alice, long(299), { from: 'carol' });
      const view = await shown(alice);
      assertNoDuplicates(view, 'alice');
      const texts = view.map((m) => m.text);
      assert.ok(!texts.includes('before 2'), 'messages from before the gap are gone');
      assert.ok(view.length < 300, `a replay of ${view.length} messages, fewer than were missed`);
      // What is shown is contiguous, up to the newest.
      const ids = view.map((m) => Number(m.id));
      assert.deepEqual(ids, ids.map((_, i) => ids[0] + i));
      await id(alice, 'load-earlier').waitFor({ state: 'visible' });
    });

    await t.test('"Load earlier messages" pages back through the messages she missed', async () => {
      const first = Number((await shown(alice))[0].id);
      await id(alice, 'load-earlier').click();
      await alice.waitForFunction((first) => {
        const el = document.querySelector('[data-testid="messages"] [data-testid="message"]');
        return el && Number(el.dataset.id) < first;
      }, first);
      const view = await shown(alice);
      assertNoDuplicates(view, 'alice');
      const ids = view.map((m) => Number(m.id));
      assert.deepEqual(ids, ids.map((_, i) => ids[0] + i), 'contiguous after paging back');
      assert.equal(view.at(-1).text, long(299));
      assert.deepEqual(problems, [], 'no page errors or CSP refusals');
    });
  }));

// --- a room bigger than one page: the count, "more", and the search box -----------

test('a big room shows its count, pages its members with "more" and searches them on the server', { timeout: 120_000 }, (t) =>
  // 130 members from one address, each with a socket of its own.
  withChat('members', ['--no-rate-limit', '--max-per-ip', '0', '--max-handshakes-per-ip', '0'], async ({ server, browser, problems }) => {
    // The crowd speaks the protocol from a page of its own, and stays.
    const crowd = await (await browser.newContext()).newPage();
    await crowd.goto(`${server.base}healthz`);
    const joined = await crowd.evaluate(async ([url, n]) => {
      window.__crowd = [];
      const welcomed = [];
      for (let i = 0; i < n; i++) {
        const ws = new WebSocket(url);
        window.__crowd.push(ws);
        welcomed.push(new Promise((ok, fail) => {
          ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', nick: `m${String(i).padStart(3, '0')}` }));
          ws.onmessage = (e) => { if (JSON.parse(e.data).type === 'welcome') ok(); };
          ws.onerror = fail;
        }));
      }
      await Promise.all(welcomed);
      return window.__crowd.length;
    }, [server.base.replace('http', 'ws') + 'ws', 130]);
    assert.equal(joined, 130);

    const ctx = await browser.newContext({ viewport: { width: 1100, height: 720 } });
    ctx.setDefaultTimeout(WAIT);
    const alice = await ctx.newPage();
    watchProblems(alice, 'alice', problems);
    await signIn(alice, server.base, 'alice');
    const listed = () => alice.$$eval('[data-testid="online"] li', (els) => els.map((e) => e.dataset.testid.slice('user-'.length)));
    const count = async () => Number((await id(alice, 'online-count').textContent()).replace(/\D/g, ''));
    const nick = (i) => `m${String(i).padStart(3, '0')}`;

    await t.test('the room shows its count and only the first page of members', async () => {
      await alice.waitForFunction(() => /online$/.test(document.getElementById('online-count').textContent));
      assert.equal(await count(), 131);
      assert.match(await id(alice, 'online-count').textContent(), /^131 online$/);
      const first = await listed();
      assert.deepEqual(first, ['alice', ...Array.from({ length: 99 }, (_, i) => nick(i))]);
      await id(alice, 'members-more').waitFor({ state: 'visible' });
    });

    await t.test('"more" loads the next page, and then there is no more', async () => {
      await id(alice, 'members-more').click();
      await alice.waitForFunction(() => document.querySelectorAll('[data-testid="online"] li').length === 131);
      assert.deepEqual(await listed(), ['alice', ...Array.from({ length: 130 }, (_, i) => nick(i))]);
      await id(alice, 'members-more').waitFor({ state: 'hidden' });
    });

    await t.test('the search box asks the server for a prefix, case ignored', async () => {
      await id(alice, 'member-search').fill('M12');
      await alice.waitForFunction(() => document.querySelectorAll('[data-testid="online"] li').length === 10);
      assert.deepEqual(await listed(), Array.from({ length: 10 }, (_, i) => nick(120 + i)));
      assert.equal(await count(), 131, 'the count stays the room\'s');
      await id(alice, 'member-search').fill('');
      await alice.waitForFunction(() => document.querySelectorAll('[data-testid="online"] li').length === 131);
    });

    await t.test('someone leaving lowers the count and leaves the list', async () => {
      await crowd.evaluate(() => window.__crowd[5].close());
      await alice.waitForFunction(() => document.getElementById('online-count').textContent.startsWith('130'));
      assert.ok(!(await listed()).includes(nick(5)));
      assert.deepEqual(problems, [], 'no page errors or CSP refusals');
    });
  }));
