// The everyday features of the chat page (issue 16), each driven in a
// real Chromium by two users in two browser contexts on a fresh server:
// drafts per conversation, safe formatting, grouping and day separators,
// the live region, the offline banner with "retry now", refused posts
// and their retry, contrast (axe-core) in both themes, signing in with a
// token, and a room past 1,000 members (count_only). Run through scripts/browser-test.sh (or, with a built
// server, `node --test tests/browser/`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import {
  WAIT, budget, id, messageUser, openDm, openRoom, pair, send, shown, signIn, sleep, statusIs, waitMessage, watchProblems, withChat,
} from './harness.mjs';

budget(600);

const composer = (page) => id(page, 'composer').inputValue();

test('drafts stay with their conversation, across switches and a reload', { timeout: 120_000 }, (t) =>
  withChat('drafts', [], async ({ server, browser, problems }) => {
    const { alice } = await pair(browser, server, problems);
    await t.test('focus is in the composer after signing in', async () => {
      assert.equal(await alice.evaluate(() => document.activeElement?.id), 'composer');
    });
    await t.test('a draft in general does not follow into the DM', async () => {
      await id(alice, 'composer').fill('half a thought for general');
      await messageUser(alice, 'bob');
      assert.equal(await id(alice, 'title').textContent(), '@bob');
      assert.equal(await composer(alice), '', 'the DM starts empty');
      await id(alice, 'composer').fill('a secret for bob');
      await openRoom(alice, 'general');
      assert.equal(await composer(alice), 'half a thought for general');
      await openDm(alice, 'bob');
      assert.equal(await composer(alice), 'a secret for bob');
    });
    await t.test('Enter in general sends general\'s draft, to general', async () => {
      await openRoom(alice, 'general');
      await id(alice, 'composer').press('Enter');
      await waitMessage(alice, 'half a thought for general', { from: 'alice' });
      assert.equal(await composer(alice), '');
      assert.ok(!(await shown(alice)).some((m) => m.text === 'a secret for bob'));
    });
    await t.test('drafts survive a reload', async () => {
      await alice.reload();
      await statusIs(alice, 'online');
      assert.equal(await composer(alice), '', 'general\'s draft was sent');
      await messageUser(alice, 'bob');
      assert.equal(await composer(alice), 'a secret for bob');
      assert.deepEqual(problems, []);
    });
  }));

test('formatting is safe: markdown subset and links from DOM nodes, never HTML', { timeout: 120_000 }, (t) =>
  withChat('markdown', [], async ({ server, browser, problems }) => {
    const { alice, bob } = await pair(browser, server, problems, { bobMobile: false });
    const evil = '**b** and _i_ and `<code>` <img src=x onerror="window.__pwned=1"> '
      + 'https://example.com/a_b?q=1&r=2. javascript:alert(1) [x](javascript:alert(2)) snake_case_name @bob';
    await t.test('bold, italic, code, links; the HTML stays text', async () => {
      await send(alice, evil);
      const text = 'b and i and <code> <img src=x onerror="window.__pwned=1"> https://example.com/a_b?q=1&r=2. '
        + 'javascript:alert(1) [x](javascript:alert(2)) snake_case_name @bob';
      await waitMessage(bob, text, { from: 'alice' });
      const got = await bob.$eval('[data-testid="message"]:last-child .text', (e) => ({
        strong: [...e.querySelectorAll('strong')].map((n) => n.textContent),
        em: [...e.querySelectorAll('em')].map((n) => n.textContent),
        code: [...e.querySelectorAll('code')].map((n) => n.textContent),
        links: [...e.querySelectorAll('a')].map((a) => ({ href: a.getAttribute('href'), text: a.textContent, rel: a.rel, target: a.target })),
        mentions: [...e.querySelectorAll('.mention')].map((n) => [n.textContent, n.classList.contains('me')]),
        elements: [...e.querySelectorAll('*')].map((n) => n.tagName.toLowerCase()).sort(),
      }));
      assert.deepEqual(got.strong, ['b']);
      assert.deepEqual(got.em, ['i']);
      assert.deepEqual(got.code, ['<code>']);
      assert.deepEqual(got.links, [{ href: 'https://example.com/a_b?q=1&r=2', text: 'https://example.com/a_b?q=1&r=2', rel: 'noopener noreferrer nofollow', target: '_blank' }]);
      assert.deepEqual(got.mentions, [['@bob', true]]);
      assert.deepEqual(got.elements, ['a', 'code', 'em', 'span', 'strong'], 'no element from the text itself');
      assert.equal(await bob.evaluate(() => window.__pwned), undefined);
      assert.equal(await bob.locator('[data-testid="messages"] img').count(), 0);
    });
    await t.test('a fenced code block is one <pre>, unformatted inside', async () => {
      await send(alice, 'look:\n```\nlet **x** = <b>1</b>;\n```\ndone');
      await bob.waitForFunction(() => document.querySelectorAll('[data-testid="messages"] pre').length === 1);
      assert.equal(await bob.$eval('[data-testid="messages"] pre', (e) => e.textContent), 'let **x** = <b>1</b>;');
      assert.equal(await bob.locator('[data-testid="messages"] pre strong, [data-testid="messages"] pre b').count(), 0);
      assert.deepEqual(problems, []);
    });
  }));

test('grouped messages, a day separator, a live region that hears only new messages', { timeout: 120_000 }, (t) =>
  withChat('render', ['--no-rate-limit'], async ({ server, browser, problems }) => {
    const { alice, bob } = await pair(browser, server, problems, { bobMobile: false });
    await t.test('consecutive messages from one sender are one group; one "Today" separator', async () => {
      await send(alice, 'one');
      await send(alice, 'two');
      await waitMessage(bob, 'two', { from: 'alice' });
      await send(bob, 'three');
      await waitMessage(alice, 'three', { from: 'bob' });
      const groups = await alice.$$eval('[data-testid="message"]', (els) => els.map((e) => [e.querySelector('.text').textContent, e.classList.contains('cont')]));
      assert.deepEqual(groups, [['one', false], ['two', true], ['three', false]]);
      assert.deepEqual(await alice.$$eval('[data-testid="day"]', (els) => els.map((e) => e.textContent)), ['Today']);
    });
    await t.test('the list is not live, and a new message adds a node without rebuilding the others', async () => {
      assert.equal(await alice.getAttribute('[data-testid="messages"]', 'aria-live'), null);
      await alice.evaluate(() => { for (const e of document.querySelectorAll('[data-testid="message"]')) e.__old = true; });
      await send(bob, 'four');
      await waitMessage(alice, 'four', { from: 'bob' });
      const marks = await alice.$$eval('[data-testid="message"]', (els) => els.map((e) => !!e.__old));
      assert.deepEqual(marks, [true, true, true, false]);
      const live = id(alice, 'announce');
      assert.equal(await live.getAttribute('aria-live'), 'polite');
      assert.match(await live.textContent(), /bob: four$/);
      assert.ok(!(await live.textContent()).includes('one'), 'old messages are not announced again');
    });
    await t.test('the message list scrolls from the keyboard', async () => {
      const scroll = id(alice, 'scroll');
      assert.equal(await scroll.getAttribute('tabindex'), '0');
      assert.equal(await scroll.getAttribute('aria-label'), 'messages');
      const texts = Array.from({ length: 40 }, (_, i) => `filler ${i}`);
      await bob.evaluate((texts) => {
        for (const t of texts) {
          document.querySelector('[data-testid="composer"]').value = t;
          document.querySelector('[data-testid="send"]').click();
        }
      }, texts);
      await waitMessage(alice, 'filler 39', { from: 'bob' });
      await scroll.focus();
      const bottom = await scroll.evaluate((e) => e.scrollTop);
      assert.ok(bottom > 0, 'the list overflows');
      await alice.keyboard.press('Home');
      await alice.waitForFunction(() => document.getElementById('scroll').scrollTop === 0);
      await id(alice, 'jump-latest').waitFor({ state: 'visible' });
      assert.equal(await id(alice, 'jump-latest').textContent(), '↓ Jump to latest');
      await send(bob, 'below the fold');
      await waitMessage(alice, 'below the fold', { from: 'bob' });
      assert.equal(await alice.evaluate(() => document.getElementById('scroll').scrollTop), 0, 'a new message does not pull the reader down');
      assert.equal(await id(alice, 'jump-latest').textContent(), '↓ 1 new message');
      await id(alice, 'jump-latest').click();
      await alice.waitForFunction(() => { const e = document.getElementById('scroll'); return e.scrollHeight - e.scrollTop - e.clientHeight < 5; });
      await id(alice, 'jump-latest').waitFor({ state: 'hidden' });
      assert.deepEqual(problems, []);
    });
  }));

test('unread badges: on the ☰ button on a phone, and in the title', { timeout: 120_000 }, (t) =>
  withChat('badges', [], async ({ server, browser, problems }) => {
    const { alice, bob } = await pair(browser, server, problems);
    await t.test('a DM to bob, who is in general on his phone', async () => {
      await messageUser(alice, 'bob');
      await send(alice, 'ping');
      await waitMessage(alice, 'ping', { from: 'alice' });
      const badge = id(bob, 'menu-unread');
      await badge.waitFor({ state: 'visible' });
      assert.equal(await badge.textContent(), '1');
      assert.match(await bob.title(), /^\(@1\) #general/, 'a DM counts as a mention');
      assert.match(await id(bob, 'menu-toggle').textContent(), /1 unread/);
      await openDm(bob, 'alice');
      await waitMessage(bob, 'ping', { from: 'alice' });
      await badge.waitFor({ state: 'hidden' });
      assert.match(await bob.title(), /^@alice/);
      assert.deepEqual(problems, []);
    });
  }));

test('the server going away shows a banner whose "retry now" reconnects at once', { timeout: 120_000 }, (t) =>
  withChat('offline', [], async ({ server, browser, problems }) => {
    const { alice, bob } = await pair(browser, server, problems);
    // alice's reconnects fail while `__away` (a path the server answers
    // with 404), so that only "retry now" can bring her back, and the
    // time of every socket she opens is kept.
    await alice.evaluate(() => {
      const Real = window.WebSocket;
      window.__opened = [];
      window.__away = false;
      window.WebSocket = function (url, protocols) {
        window.__opened.push(Date.now());
        return new Real(window.__away ? String(url).replace(/\/ws$/, '/away') : url, protocols);
      };
      window.WebSocket.prototype = Real.prototype;
      Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
    });
    await t.test('down: the banner says so', async () => {
      await alice.evaluate(() => { window.__away = true; });
      await server.stop();
      await id(alice, 'offline').waitFor({ state: 'visible' });
      assert.match(await id(alice, 'offline').textContent(), /offline/i);
      assert.equal(await id(alice, 'offline').getAttribute('role'), 'alert');
      await id(bob, 'retry-now').waitFor({ state: 'visible' });
      // Long enough for the backoff to have grown past several seconds.
      await sleep(7000);
      await server.start();
      await sleep(500);
      await statusIs(alice, 'reconnecting');
    });
    await t.test('up again: "retry now" connects without waiting out the backoff', async () => {
      // In one task of the page: the banner is there, the network is back, click.
      const { shown, clicked } = await alice.evaluate(() => {
        const shown = !document.getElementById('offline').hidden;
        window.__away = false;
        const clicked = Date.now();
        document.querySelector('[data-testid="retry-now"]').click();
        return { shown, clicked };
      });
      assert.ok(shown, 'the banner was up');
      await statusIs(alice, 'online');
      const opened = await alice.evaluate((t) => window.__opened.filter((o) => o >= t), clicked);
      assert.ok(opened.length >= 1 && opened[0] - clicked < 100, `a socket opened at once: ${opened.map((o) => o - clicked)} ms after the click`);
      await id(alice, 'offline').waitFor({ state: 'hidden' });
      await send(alice, 'back');
      await waitMessage(bob, 'back', { from: 'alice' });
      assert.deepEqual(problems, []);
    });
  }));

test('refused posts are marked failed with a retry, and their errors make one toast', { timeout: 120_000 }, (t) =>
  withChat('refused', [], async ({ server, browser, problems }) => {
    const { alice, bob } = await pair(browser, server, problems, { bobMobile: false });
    await t.test('40 quick sends: the rate limit refuses some, each marked failed', async () => {
      await alice.evaluate(() => {
        for (let i = 0; i < 40; i++) {
          document.querySelector('[data-testid="composer"]').value = `quick ${i}`;
          document.querySelector('[data-testid="send"]').click();
        }
      });
      await alice.waitForFunction(() => document.querySelectorAll('[data-testid="message"][data-state="pending"]').length === 0);
      const failed = await alice.$$eval('[data-testid="message"][data-state="failed"]', (els) => els.length);
      assert.ok(failed > 0, 'some were refused');
      assert.equal(await alice.locator('[data-testid="message"][data-state="failed"] [data-testid="retry"]').count(), failed);
      const toasts = await alice.$$eval('[data-testid="toast"]', (els) => els.map((e) => e.textContent));
      assert.equal(toasts.length, 1, `one toast: ${JSON.stringify(toasts)}`);
      assert.match(toasts[0], /rate_limited.*\(×\d+\)/);
    });
    await t.test('"retry" sends it again, and it goes through', async () => {
      await sleep(2500); // the bucket refills
      const li = alice.locator('[data-testid="message"][data-state="failed"]').first();
      const text = await li.locator('.text').textContent();
      await li.getByTestId('retry').click();
      await waitMessage(alice, text, { from: 'alice', state: 'sent' });
      await waitMessage(bob, text, { from: 'alice' });
      assert.deepEqual(problems, []);
    });
  }));

const axeSource = readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/** axe-core's violations on `page` (of `rules`, or all of them), as readable lines. */
async function axe(page, rules) {
  // evaluate() is not subject to the page's CSP, a script tag would be.
  await page.evaluate(await axeSource);
  const res = await page.evaluate((rules) => window.axe.run(document, rules ? { runOnly: rules } : {}), rules);
  return res.violations.flatMap((v) => v.nodes.map((n) => `${v.id} ${n.target.join(' ')}: ${[...n.any, ...n.all, ...n.none].map((a) => a.message).join('; ')}`));
}
const contrast = (page) => axe(page, ['color-contrast']);

for (const scheme of ['light', 'dark']) {
  test(`no contrast failures (axe-core) in the ${scheme} theme`, { timeout: 120_000 }, (t) =>
    withChat(`axe-${scheme}`, [], async ({ server, browser, problems }) => {
      const { alice, bob } = await pair(browser, server, problems, { bobMobile: false });
      for (const page of [alice, bob]) await page.emulateMedia({ colorScheme: scheme });
      // Everything a page shows: messages of both, a mention, a link,
      // code, reactions, a reply's quote, "(edited)", a tombstone, "seen
      // by", the "new messages" divider, a DM with an unread badge, and
      // (offline) the banner and a pending post.
      await send(bob, 'hi **alice**, see https://example.com and `code` @alice');
      await send(alice, 'hello bob');
      await waitMessage(alice, 'hello bob', { from: 'alice' });
      // A reaction, a reply, an edit, a tombstone and "seen by".
      const bobs = alice.locator('[data-testid="message"][data-from="bob"]').first();
      await bobs.getByTestId('react').click();
      await alice.getByTestId('picker').getByRole('button', { name: 'react 🎉' }).click();
      await bobs.locator('[data-testid="reaction"]').waitFor();
      await bobs.getByTestId('reply').click();
      await id(alice, 'composer').fill('a reply');
      await id(alice, 'composer').press('Enter');
      await waitMessage(bob, 'a reply', { from: 'alice' });
      const mine = alice.locator('[data-testid="message"][data-from="alice"]').first();
      await mine.getByTestId('edit').click();
      await id(alice, 'composer').fill('hello bob, edited');
      await id(alice, 'composer').press('Enter');
      await waitMessage(bob, 'hello bob, edited', { from: 'alice' });
      await send(alice, 'to be deleted');
      const gone = alice.locator('[data-testid="message"][data-from="alice"]').last();
      await gone.getByTestId('delete').click();
      await gone.getByTestId('delete').click();
      await bob.waitForFunction(() => document.querySelector('[data-testid="message"][data-deleted="true"]'));
      await alice.getByTestId('seen').first().waitFor();
      // alice away in a DM while bob writes: back in general, the divider.
      await messageUser(alice, 'bob');
      await send(bob, 'while you were away');
      await id(alice, 'room-general').getByTestId('unread').waitFor({ state: 'visible' });
      await id(alice, 'room-general').locator('button.open').click();
      await alice.getByTestId('new-divider').waitFor();
      await messageUser(bob, 'alice');
      await send(bob, 'psst');
      await id(alice, 'dm-bob').getByTestId('unread').waitFor({ state: 'visible' });
      await t.test('the chat, both users', async () => {
        for (const [who, page] of [['alice', alice], ['bob', bob]]) {
          const found = await contrast(page);
          assert.deepEqual(found, [], `${who} (${scheme}): ${found.join('\n')}`);
        }
      });
      await t.test('and no other axe-core violation', async () => {
        for (const [who, page] of [['alice', alice], ['bob', bob]]) {
          const found = await axe(page);
          assert.deepEqual(found, [], `${who} (${scheme}): ${found.join('\n')}`);
        }
      });
      await t.test('offline: the banner', async () => {
        await server.stop();
        await id(alice, 'offline').waitFor({ state: 'visible' });
        await send(alice, 'not yet');
        const found = await contrast(alice);
        assert.deepEqual(found, [], found.join('\n'));
      });
    }));
}

/** An HS256 JWT for `name`, signed with `secret`. */
function jwt(secret, name, expSecs = 3600) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ name, exp: Math.floor(Date.now() / 1000) + expSecs })}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

test('with --jwt-secret the page asks for a token, never leaving a dead composer', { timeout: 120_000 }, (t) =>
  // Tokens from elsewhere only: with accounts beside them the page asks
  // for a login instead (accounts.test.mjs).
  withChat('jwt', ['--jwt-secret', 'browser-secret', '--accounts', 'off'], async ({ server, browser, problems }) => {
    const ctx = await browser.newContext();
    ctx.setDefaultTimeout(WAIT);
    const page = await ctx.newPage();
    watchProblems(page, 'dora', problems);
    await t.test('no nick dialog: a token dialog, and the composer disabled with a reason', async () => {
      await page.goto(server.base);
      await id(page, 'token-dialog').waitFor({ state: 'visible' });
      assert.ok(await page.locator('#nick-dialog').isHidden());
      assert.ok(await id(page, 'composer').isDisabled());
      assert.match(await id(page, 'composer').getAttribute('placeholder'), /token/);
    });
    await t.test('a wrong token is refused: the dialog says so, the composer stays disabled', async () => {
      await id(page, 'token-input').fill(jwt('not-the-secret', 'dora'));
      await id(page, 'token-submit').click();
      await id(page, 'token-error').waitFor({ state: 'visible' });
      assert.match(await id(page, 'token-error').textContent(), /refused/);
      assert.ok(await id(page, 'composer').isDisabled());
    });
    await t.test('a good token signs in as its name; focus in the composer', async () => {
      await id(page, 'token-input').fill(jwt('browser-secret', 'dora'));
      await id(page, 'token-submit').click();
      await statusIs(page, 'online');
      assert.equal(await id(page, 'me').textContent(), 'dora');
      assert.ok(await id(page, 'composer').isEnabled());
      assert.equal(await page.evaluate(() => document.activeElement?.id), 'composer');
      assert.ok(await id(page, 'rename-input').isHidden(), 'the nick is the token\'s: no rename');
      await id(page, 'logout').waitFor();
      await send(page, 'signed in');
      await waitMessage(page, 'signed in', { from: 'dora' });
    });
    await t.test('the login URL /?token=… signs in and leaves the address bar', async () => {
      const other = await (await browser.newContext()).newPage();
      watchProblems(other, 'erin', problems);
      await other.goto(`${server.base}?token=${jwt('browser-secret', 'erin')}`);
      await statusIs(other, 'online');
      assert.equal(await id(other, 'me').textContent(), 'erin');
      assert.equal(other.url(), server.base, 'the token is no longer in the URL');
      await other.reload();
      await statusIs(other, 'online');
      assert.equal(await id(other, 'me').textContent(), 'erin', 'kept across a reload');
      assert.deepEqual(problems, []);
    });
  }));

test('a room past 1,000 members: the count follows, the list is kept and paged again at most every few seconds', { timeout: 180_000 }, (t) =>
  withChat('large', ['--no-rate-limit', '--max-per-ip', '0', '--max-handshakes-per-ip', '0'], async ({ server, browser, problems }) => {
    // The crowd is a node process of its own (1,001 sockets are more than
    // a browser page would hold).
    const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'crowd.mjs');
    const crowd = spawn(process.execPath, ['--experimental-websocket', '--no-warnings', script, `${server.base.replace('http', 'ws')}ws`, '1001'],
      { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = readline.createInterface({ input: crowd.stdout });
    const ready = async () => { const [line] = await once(lines, 'line'); return Number(line.split(' ')[1]); };
    try {
      assert.equal(await ready(), 1001);
      const ctx = await browser.newContext({ viewport: { width: 1100, height: 720 } });
      ctx.setDefaultTimeout(WAIT);
      const alice = await ctx.newPage();
      watchProblems(alice, 'alice', problems);
      const asked = []; // when alice asked for members
      alice.on('websocket', (ws) => ws.on('framesent', (f) => { if (JSON.parse(f.payload).type === 'members') asked.push(Date.now()); }));
      const counts = []; // when alice was told only a count
      alice.on('websocket', (ws) => ws.on('framereceived', (f) => { if (JSON.parse(f.payload).count_only) counts.push(Date.now()); }));
      await signIn(alice, server.base, 'alice');
      const count = async () => Number((await id(alice, 'online-count').textContent()).replace(/\D/g, ''));
      await t.test('the count is the room\'s, the list its first page', async () => {
        await alice.waitForFunction(() => /online$/.test(document.getElementById('online-count').textContent));
        assert.equal(await count(), 1002);
        assert.equal(await alice.locator('[data-testid="online"] li').count(), 100);
      });
      await t.test('joins show as a count; the list is paged again once, not at every count', async () => {
        for (let i = 0; i < 4; i++) {
          crowd.stdin.write('more\n');
          await ready();
          await sleep(1100); // one count_only a second at most
        }
        await alice.waitForFunction(() => document.getElementById('online-count').textContent.replace(/\D/g, '') === '1006');
        // Every count since alice's join, and how often she paged: once
        // per 5 s at most (the first count pages at once).
        const span = Date.now() - counts[0];
        assert.ok(counts.length >= 4, `${counts.length} counts`);
        const paged = asked.filter((a) => a >= counts[0]);
        assert.ok(paged.length >= 1 && paged.length <= 1 + Math.floor(span / 5000), `members asked ${paged.length} times in ${span} ms, for ${counts.length} counts`);
        assert.equal(await alice.locator('[data-testid="online"] li').count(), 100, 'still one page');
        assert.deepEqual(problems, []);
      });
    } finally {
      crowd.stdin.end();
      crowd.kill();
    }
  }));
