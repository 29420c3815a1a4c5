// The wire panel (issue 22), in a real Chromium: off by default; opened,
// it shows this page's own frames as the server parsed and sent them (the
// browser's masked with a 4-byte key, the server's unmasked, the opcode,
// the length and its encoding, compression when Chromium negotiated it),
// a payload expands, and each field links to its RFC section; closed, the
// server stops recording (its /metrics gauge says so). Run through
// scripts/browser-test.sh (or, with a built server, `node --test
// tests/browser/wire.test.mjs`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WAIT, budget, id, send, signIn, sleep, waitMessage, watchProblems, withChat } from './harness.mjs';

budget(300);

/** The server's `chat_wire_connections` gauge. */
async function recording(server) {
  const text = await (await fetch(`${server.base}metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('chat_wire_connections '));
  assert.ok(line, 'chat_wire_connections is in /metrics');
  return Number(line.split(' ')[1]);
}

async function waitRecording(server, want) {
  const deadline = Date.now() + WAIT;
  while (Date.now() < deadline) {
    if (await recording(server) === want) return;
    await sleep(100);
  }
  assert.equal(await recording(server), want, 'chat_wire_connections');
}

/** The minimal encoding of a payload length (RFC 6455 §5.2). */
const encoding = (len) => (len <= 125 ? '7-bit' : len <= 0xffff ? '16-bit' : '64-bit');

test('the wire panel shows the connection\'s frames, field by field', { timeout: 120_000 }, (t) =>
  withChat('wire', [], async ({ server, browser, problems }) => {
    const ctx = await browser.newContext({ viewport: { width: 1200, height: 800 } });
    ctx.setDefaultTimeout(WAIT);
    // The RFC's pages, served here: the test stays off the network.
    await ctx.route('https://www.rfc-editor.org/**', (route) =>
      route.fulfill({ status: 200, contentType: 'text/html', body: '<title>RFC</title>' }));
    const page = await ctx.newPage();
    watchProblems(page, 'wendy', problems);
    await signIn(page, server.base, 'wendy');
    const text = 'looking at frames on the wire, byte by byte, with a masking key and a length';

    await t.test('off by default: no panel, nothing recorded', async () => {
      assert.equal(await id(page, 'wire-panel').isHidden(), true);
      assert.equal(await id(page, 'wire-toggle').getAttribute('aria-pressed'), 'false');
      assert.equal(await recording(server), 0);
    });

    await t.test('the toggle opens the panel and the server starts recording', async () => {
      await id(page, 'wire-toggle').click();
      await id(page, 'wire-panel').and(page.locator('[data-recording="on"]')).waitFor();
      assert.equal(await id(page, 'wire-toggle').getAttribute('aria-pressed'), 'true');
      await waitRecording(server, 1);
    });

    const incoming = id(page, 'wire-frame').and(page.locator('[data-dir="in"][data-op="text"]'));
    const outgoing = id(page, 'wire-frame').and(page.locator('[data-dir="out"][data-op="text"]'));

    await t.test('the page\'s frame: MASK=1 with a 4-byte key, text, its length encoding', async () => {
      await send(page, text);
      await waitMessage(page, text, { from: 'wendy' });
      const frame = incoming.filter({ hasText: 'client_id' }).first();
      await frame.waitFor();
      assert.equal(await frame.getByTestId('wire-mask').textContent(), 'MASK=1');
      assert.match(await frame.getByTestId('wire-key').textContent(), /^key [0-9a-f]{8}$/, 'a 4-byte key, in hex');
      assert.equal(await frame.getByTestId('wire-op').textContent(), 'text (0x1)');
      assert.equal(await frame.getByTestId('wire-fin').textContent(), 'FIN=1');
      const [, len, enc] = /^len=(\d+) \((\d+-bit)\)$/.exec(await frame.getByTestId('wire-len').textContent());
      assert.equal(enc, encoding(Number(len)), 'the minimal encoding of the length');
      // Chromium offers permessage-deflate and the server accepts it: then
      // the frame says both sizes, and RSV1 marks it (RFC 7692 §6).
      const deflate = frame.getByTestId('wire-deflate');
      if (await deflate.count()) {
        const [, wire, inflated] = /^(\d+) B compressed → (\d+) B$/.exec(await deflate.textContent());
        assert.equal(wire, len);
        assert.ok(Number(inflated) > text.length, `inflates to the whole request: ${inflated}`);
        assert.equal(await frame.getByTestId('wire-rsv').textContent(), 'RSV=100');
      } else {
        assert.equal(await frame.getByTestId('wire-rsv').textContent(), 'RSV=000');
      }
    });

    await t.test('the server\'s frame: MASK=0 and no key', async () => {
      const frame = outgoing.filter({ hasText: text.slice(0, 20) }).first();
      await frame.waitFor();
      assert.equal(await frame.getByTestId('wire-mask').textContent(), 'MASK=0');
      assert.equal(await frame.getByTestId('wire-key').count(), 0);
      assert.match(await frame.getByTestId('wire-len').textContent(), /^len=\d+ \((7|16|64)-bit\)$/);
    });

    await t.test('a payload is cut, and expands', async () => {
      const frame = incoming.filter({ hasText: 'client_id' }).first();
      const preview = await frame.getByTestId('wire-preview').textContent();
      assert.ok(preview.endsWith('…'), `cut: ${preview}`);
      assert.equal(await frame.getByTestId('wire-full').isVisible(), false);
      await frame.getByTestId('wire-preview').click();
      await frame.getByTestId('wire-full').waitFor({ state: 'visible' });
      const full = JSON.parse(await frame.getByTestId('wire-full').textContent());
      assert.equal(full.type, 'msg');
      assert.equal(full.text, text);
    });

    await t.test('a long message takes a 16-bit length, and its payload is kept in part', async () => {
      // Letters that do not repeat much, so that even compressed the
      // frame is over 125 bytes.
      let seed = 7;
      const long = Array.from({ length: 600 }, () => {
        seed = (seed * 1103515245 + 12345) % 2147483648;
        return 'abcdefghijklmnopqrstuvwxyz '[seed % 27];
      }).join('').replace(/\s+/g, ' ').trim();
      await send(page, long);
      await waitMessage(page, long, { from: 'wendy' });
      const frame = incoming.filter({ hasText: long.slice(0, 30) }).first();
      await frame.waitFor();
      const [, len, enc] = /^len=(\d+) \((\d+-bit)\)$/.exec(await frame.getByTestId('wire-len').textContent());
      assert.ok(Number(len) > 125, `len ${len}`);
      assert.equal(enc, '16-bit');
      await frame.getByTestId('wire-preview').click();
      assert.match(await frame.locator('details p.hint').textContent(), /^256 of \d+ bytes kept, as text\./);
    });

    await t.test('each field links to its RFC section, and the link opens it', async () => {
      const frame = incoming.filter({ hasText: 'client_id' }).first();
      const key = frame.getByTestId('wire-key');
      assert.equal(await key.getAttribute('href'), 'https://www.rfc-editor.org/rfc/rfc6455#section-5.3');
      assert.equal(await frame.getByTestId('wire-len').getAttribute('href'), 'https://www.rfc-editor.org/rfc/rfc6455#section-5.2');
      assert.equal(await frame.getByTestId('wire-mask').getAttribute('href'), 'https://www.rfc-editor.org/rfc/rfc6455#section-5.2');
      const [tab] = await Promise.all([ctx.waitForEvent('page'), key.click()]);
      await tab.waitForLoadState();
      assert.equal(tab.url(), 'https://www.rfc-editor.org/rfc/rfc6455#section-5.3');
      await tab.close();
    });

    await t.test('the panel\'s own frames are not shown, and it says so', async () => {
      const frames = await page.$$eval('[data-testid="wire-frame"] [data-testid="wire-full"]', (els) => els.map((e) => e.textContent));
      assert.ok(frames.every((f) => !f.startsWith('{"type":"wire"')), 'no wire request or event among them');
      assert.match(await id(page, 'wire-note').textContent(), /frames of this panel’s own traffic not shown/);
    });

    await t.test('closing the panel stops the recording on the server', async () => {
      await id(page, 'wire-close').click();
      assert.equal(await id(page, 'wire-panel').isHidden(), true);
      await waitRecording(server, 0);
      const before = await id(page, 'wire-frame').count();
      await send(page, 'not recorded');
      await waitMessage(page, 'not recorded', { from: 'wendy' });
      await sleep(300);
      assert.equal(await id(page, 'wire-frame').count(), before, 'no frame added');
      assert.equal(await recording(server), 0);
      assert.deepEqual(problems, []);
    });
    await ctx.close();
  }));
