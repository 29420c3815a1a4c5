// A conversation rather than a stream (issue 16), in a real Chromium with
// two users: edit, delete, reactions and replies (jumping to the message
// replied to, loading history when needed), and what survives a reload.
// Run through scripts/browser-test.sh (or `node --test tests/browser/`
// with a built server).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WAIT, budget, id, messageUser, openDm, openRoom, pair, send, shown, statusIs, waitMessage, withChat } from './harness.mjs';

budget(600);

/** The message with this text, as a locator. */
const message = (page, text) => page.locator('[data-testid="messages"] [data-testid="message"]').filter({
  has: page.locator('.text', { hasText: new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) }),
});

/** {emoji: [count, pressed]} of a message's reactions. */
const reactions = (loc) => loc.locator('[data-testid="reaction"]').evaluateAll((els) =>
  Object.fromEntries(els.map((e) => [e.dataset.emoji, [Number(e.querySelector('.count').textContent), e.getAttribute('aria-pressed') === 'true']])));

test('edit, react, reply and delete, seen from both sides and after a reload', { timeout: 180_000 }, (t) =>
  withChat('lifecycle', ['--no-rate-limit'], async ({ server, browser, problems }) => {
    const { alice, bob } = await pair(browser, server, problems, { bobMobile: false });
    let first;
    await t.test('alice edits her message: both see the new text, "(edited)"', async () => {
      await send(alice, 'first draft');
      first = await waitMessage(bob, 'first draft', { from: 'alice' });
      await message(alice, 'first draft').getByTestId('edit').click();
      assert.equal(await id(alice, 'composer').inputValue(), 'first draft');
      assert.match(await id(alice, 'compose-ctx').textContent(), /Editing/);
      await id(alice, 'composer').fill('final text');
      await id(alice, 'composer').press('Enter');
      for (const page of [alice, bob]) {
        await waitMessage(page, 'final text', { from: 'alice' });
        await message(page, 'final text').getByTestId('edited').waitFor();
      }
      assert.equal(await id(alice, 'composer').inputValue(), '', 'the composer is free again');
      assert.ok(await id(alice, 'compose-ctx').isHidden());
      assert.equal((await shown(bob)).length, 1, 'an edit is no new message');
      assert.equal(await bob.locator('[data-testid="message"] [data-testid="edit"]').count(), 0, 'bob cannot edit alice\'s message');
    });
    await t.test('reactions: a picker, counts, toggles', async () => {
      await message(bob, 'final text').getByTestId('react').click();
      await bob.getByTestId('picker').getByRole('button', { name: 'react 👍' }).click();
      await alice.waitForFunction(() => document.querySelector('[data-testid="reaction"][data-emoji="👍"]'));
      assert.deepEqual(await reactions(message(alice, 'final text')), { '👍': [1, false] });
      assert.deepEqual(await reactions(message(bob, 'final text')), { '👍': [1, true] });
      await message(alice, 'final text').locator('[data-testid="reaction"][data-emoji="👍"]').click();
      await bob.waitForFunction(() => document.querySelector('[data-testid="reaction"][data-emoji="👍"] .count')?.textContent === '2');
      await message(bob, 'final text').locator('[data-testid="reaction"][data-emoji="👍"]').click();
      await alice.waitForFunction(() => document.querySelector('[data-testid="reaction"][data-emoji="👍"] .count')?.textContent === '1');
      assert.deepEqual(await reactions(message(alice, 'final text')), { '👍': [1, true] });
      assert.deepEqual(await reactions(message(bob, 'final text')), { '👍': [1, false] });
      // Escape closes the picker, and so does a click elsewhere.
      await message(bob, 'final text').getByTestId('react').click();
      await bob.getByTestId('picker').waitFor();
      await bob.keyboard.press('Escape');
      await bob.getByTestId('picker').waitFor({ state: 'detached' });
      await message(bob, 'final text').getByTestId('react').click();
      await bob.getByTestId('picker').waitFor();
      await id(bob, 'title').click();
      await bob.getByTestId('picker').waitFor({ state: 'detached' });
    });
    await t.test('bob replies: the reply quotes it, and a click on the quote goes to it', async () => {
      await message(bob, 'final text').getByTestId('reply').click();
      assert.match(await id(bob, 'compose-ctx').textContent(), /Replying to alice: final text/);
      await id(bob, 'composer').fill('agreed');
      await id(bob, 'composer').press('Enter');
      await waitMessage(alice, 'agreed', { from: 'bob' });
      const quote = message(alice, 'agreed').getByTestId('quote');
      assert.equal(await quote.locator('.quote-from').textContent(), 'alice');
      assert.equal(await quote.locator('.quote-text').textContent(), 'final text');
      await quote.click();
      await alice.waitForFunction((i) => document.activeElement?.dataset?.id === i, first.id);
    });
    await t.test('alice deletes (two clicks): a tombstone on both sides', async () => {
      await send(alice, 'oops, wrong room');
      await waitMessage(bob, 'oops, wrong room', { from: 'alice' });
      const del = message(alice, 'oops, wrong room').getByTestId('delete');
      await del.click();
      assert.equal(await message(alice, 'oops, wrong room').getByTestId('delete').textContent(), 'delete?');
      await message(alice, 'oops, wrong room').getByTestId('delete').click();
      for (const page of [alice, bob]) {
        await page.waitForFunction(() => [...document.querySelectorAll('[data-testid="message"]')].some((e) => e.dataset.deleted === 'true'));
        assert.ok(!(await shown(page)).some((m) => m.text === 'oops, wrong room'));
        assert.ok((await shown(page)).some((m) => m.text === 'message deleted'));
      }
    });
    await t.test('bob reloads: history has the edit, the reactions, the reply and the tombstone', async () => {
      await bob.reload();
      await statusIs(bob, 'online');
      await waitMessage(bob, 'agreed', { from: 'bob' });
      const view = (await shown(bob)).map((m) => m.text);
      assert.deepEqual(view, ['final text', 'agreed', 'message deleted']);
      await message(bob, 'final text').getByTestId('edited').waitFor();
      assert.deepEqual(await reactions(message(bob, 'final text')), { '👍': [1, false] });
      assert.equal(await message(bob, 'agreed').locator('.quote-text').textContent(), 'final text');
      assert.deepEqual(problems, []);
    });
    await t.test('a quote of a message older than the history loaded pages back to it', async () => {
      await send(alice, 'the old question');
      const old = await waitMessage(alice, 'the old question', { from: 'alice' });
      await alice.evaluate(() => {
        for (let i = 0; i < 70; i++) {
          document.querySelector('[data-testid="composer"]').value = `filler ${i}`;
          document.querySelector('[data-testid="send"]').click();
        }
      });
      await waitMessage(bob, 'filler 69', { from: 'alice' });
      await message(bob, 'the old question').getByTestId('reply').click();
      await id(bob, 'composer').fill('the late answer');
      await id(bob, 'composer').press('Enter');
      await waitMessage(alice, 'the late answer', { from: 'bob' });
      await alice.reload();
      await statusIs(alice, 'online');
      await waitMessage(alice, 'the late answer', { from: 'bob' });
      assert.ok(!(await shown(alice)).some((m) => m.id === old.id), 'not loaded after the reload');
      await message(alice, 'the late answer').getByTestId('quote').click();
      await alice.waitForFunction((i) => document.activeElement?.dataset?.id === i, old.id, { timeout: WAIT });
      assert.deepEqual(problems, []);
    });
  }));

test('"seen by", unread counts and the "new messages" divider after a reload', { timeout: 180_000 }, (t) =>
  withChat('reads', [], async ({ server, browser, problems }) => {
    const { alice, bob } = await pair(browser, server, problems, { bobMobile: false });
    await t.test('bob reads alice\'s message: she sees "seen by bob"', async () => {
      await send(alice, 'did you see this?');
      await waitMessage(bob, 'did you see this?', { from: 'alice' });
      const seen = message(alice, 'did you see this?').getByTestId('seen');
      await seen.waitFor();
      assert.equal(await seen.textContent(), 'seen by bob');
      assert.equal(await bob.getByTestId('seen').count(), 0, 'bob\'s own read is not shown to him');
    });
    await t.test('three messages while bob looks elsewhere: after his reload, general says 3 and the divider is before them', async () => {
      await messageUser(bob, 'alice');
      assert.equal(await id(bob, 'title').textContent(), '@alice');
      for (const text of ['one', 'two', 'three']) await send(alice, text);
      await id(bob, 'room-general').getByTestId('unread').and(bob.getByText('3', { exact: true })).waitFor();
      await bob.reload();
      await statusIs(bob, 'online');
      assert.equal(await id(bob, 'title').textContent(), '@alice', 'the conversation in view survives the reload');
      const badge = id(bob, 'room-general').getByTestId('unread');
      await badge.and(bob.getByText('3', { exact: true })).waitFor();
      assert.match(await bob.title(), /^\(3\)/);
      await openRoom(bob, 'general');
      await waitMessage(bob, 'three', { from: 'alice' });
      const order = await bob.$$eval('[data-testid="messages"] > li', (els) => els.map((e) => e.dataset.testid === 'new-divider' ? '|' : e.querySelector('.text')?.textContent).filter(Boolean));
      assert.deepEqual(order, ['did you see this?', '|', 'one', 'two', 'three']);
      await badge.waitFor({ state: 'hidden' });
    });
    await t.test('read there, nothing is unread after another reload', async () => {
      await alice.getByTestId('seen').filter({ hasText: 'seen by bob' }).last().waitFor();
      assert.equal(await message(alice, 'three').getByTestId('seen').textContent(), 'seen by bob');
      await bob.reload();
      await statusIs(bob, 'online');
      await waitMessage(bob, 'three', { from: 'alice' });
      assert.equal(await bob.getByTestId('new-divider').count(), 0);
      assert.ok(await id(bob, 'room-general').getByTestId('unread').isHidden());
      assert.deepEqual(problems, []);
    });
  }));

test('DMs last: the list and the messages survive a reload; a DM to someone away arrives when they are back', { timeout: 180_000 }, (t) =>
  withChat('dms', [], async ({ server, browser, problems }) => {
    const { alice, bob, bctx } = await pair(browser, server, problems, { bobMobile: false });
    await t.test('a DM survives both reloads', async () => {
      await messageUser(alice, 'bob');
      await send(alice, 'just between us');
      await waitMessage(alice, 'just between us', { from: 'alice' });
      await id(bob, 'dm-alice').waitFor();
      await alice.reload();
      await statusIs(alice, 'online');
      await id(alice, 'dm-bob').waitFor();
      await waitMessage(alice, 'just between us', { from: 'alice' });
      await bob.reload();
      await statusIs(bob, 'online');
      await id(bob, 'dm-alice').getByTestId('unread').and(bob.getByText('1', { exact: true })).waitFor();
      await openDm(bob, 'alice');
      await waitMessage(bob, 'just between us', { from: 'alice' });
    });
    await t.test('bob is away; alice\'s DM waits for him and shows as unread when he is back', async () => {
      await bob.close();
      await id(alice, 'user-bob').waitFor({ state: 'detached' });
      await send(alice, 'for when you are back');
      await waitMessage(alice, 'for when you are back', { from: 'alice' });
      const back = await bctx.newPage();
      await back.goto(server.base);
      await statusIs(back, 'online');
      assert.equal(await id(back, 'me').textContent(), 'bob');
      await id(back, 'dm-alice').getByTestId('unread').and(back.getByText('1', { exact: true })).waitFor();
      await openDm(back, 'alice');
      await waitMessage(back, 'for when you are back', { from: 'alice' });
      assert.deepEqual(problems, []);
    });
  }));

test('two tabs are one user: one nick, one member, both tabs get everything', { timeout: 180_000 }, (t) =>
  withChat('tabs', [], async ({ server, browser, problems }) => {
    const { alice, bob, actx } = await pair(browser, server, problems, { bobMobile: false });
    const second = await actx.newPage();
    await second.goto(server.base);
    await statusIs(second, 'online');
    await t.test('the second tab is alice too, and the room counts her once', async () => {
      assert.equal(await id(second, 'me').textContent(), 'alice');
      await bob.waitForFunction(() => document.getElementById('online-count').textContent === '2 online');
      assert.deepEqual(await bob.$$eval('[data-testid="online"] li', (els) => els.map((e) => e.dataset.testid)), ['user-alice', 'user-bob']);
    });
    await t.test('what one tab sends, the other shows as hers; a DM reaches both', async () => {
      await send(alice, 'from tab one');
      await waitMessage(second, 'from tab one', { from: 'alice' });
      assert.ok(await message(second, 'from tab one').evaluate((e) => e.classList.contains('mine')));
      await messageUser(bob, 'alice');
      await send(bob, 'to both tabs');
      for (const page of [alice, second]) {
        await id(page, 'dm-bob').waitFor();
        await openDm(page, 'bob');
        await waitMessage(page, 'to both tabs', { from: 'bob' });
      }
      assert.deepEqual(problems, []);
    });
  }));

test('a mention (and a DM): highlighted, counted in the title, and a notification while the page is hidden', { timeout: 120_000 }, (t) =>
  withChat('mentions', [], async ({ server, browser, problems }) => {
    const { alice, bob, actx } = await pair(browser, server, problems, { bobMobile: false });
    // Notifications allowed, recorded instead of shown; the page's
    // visibility in the test's hands.
    await actx.grantPermissions(['notifications']);
    await alice.evaluate(() => {
      window.__notes = [];
      window.Notification = class { constructor(title, opts) { window.__notes.push({ title, body: opts?.body }); } static get permission() { return 'granted'; } };
      window.__hidden = false;
      Object.defineProperty(document, 'hidden', { get: () => window.__hidden });
    });
    await t.test('in view: the message is highlighted, no notification', async () => {
      await send(bob, 'hey @alice, look');
      await waitMessage(alice, 'hey @alice, look', { from: 'bob' });
      assert.ok(await message(alice, 'hey @alice, look').evaluate((e) => e.classList.contains('mentioned')));
      assert.equal(await message(alice, 'hey @alice, look').locator('.mention.me').textContent(), '@alice');
      assert.deepEqual(await alice.evaluate(() => window.__notes), []);
    });
    await t.test('hidden: a notification, and the title counts the mention', async () => {
      await alice.evaluate(() => { window.__hidden = true; });
      await send(bob, '@alice are you there?');
      await alice.waitForFunction(() => window.__notes.length === 1);
      assert.deepEqual(await alice.evaluate(() => window.__notes), [{ title: 'bob mentioned you in #general', body: '@alice are you there?' }]);
      assert.match(await alice.title(), /^\(@1\)/);
      await messageUser(bob, 'alice');
      await send(bob, 'a private word');
      await alice.waitForFunction(() => window.__notes.length === 2);
      assert.deepEqual((await alice.evaluate(() => window.__notes))[1], { title: 'bob sent you a direct message', body: 'a private word' });
      assert.match(await alice.title(), /^\(@2\)/);
      await alice.evaluate(() => { window.__hidden = false; document.dispatchEvent(new Event('visibilitychange')); });
      await id(alice, 'dm-bob').getByTestId('unread').waitFor({ state: 'visible' });
      await alice.waitForFunction(() => document.title.startsWith('(@1)'), null, { timeout: WAIT });
      await openDm(alice, 'bob');
      await alice.waitForFunction(() => !document.title.startsWith('('));
      assert.deepEqual(problems, []);
    });
  }));

test('a user renames (both tabs follow) and logs out everywhere', { timeout: 120_000 }, (t) =>
  withChat('account', [], async ({ server, browser, problems }) => {
    const { alice, bob, actx } = await pair(browser, server, problems, { bobMobile: false });
    const second = await actx.newPage();
    await second.goto(server.base);
    await statusIs(second, 'online');
    await t.test('rename: alice becomes alicia, in both tabs and for bob', async () => {
      await id(alice, 'rename-input').fill('alicia');
      await id(alice, 'rename-submit').click();
      await alice.waitForFunction(() => document.querySelector('[data-testid="me"]').textContent === 'alicia');
      await second.waitForFunction(() => document.querySelector('[data-testid="me"]').textContent === 'alicia', null, { timeout: WAIT });
      await statusIs(second, 'online');
      await id(bob, 'user-alicia').waitFor();
      await id(bob, 'user-alice').waitFor({ state: 'detached' });
      await send(second, 'new name');
      await waitMessage(bob, 'new name', { from: 'alicia' });
    });
    await t.test('a taken nick is refused, and says so', async () => {
      await id(alice, 'rename-input').fill('bob');
      await id(alice, 'rename-submit').click();
      await alice.getByTestId('toast').filter({ hasText: 'nick_taken' }).waitFor();
      assert.equal(await id(alice, 'me').textContent(), 'alicia');
    });
    await t.test('log out: both tabs are back at the nick dialog, and alicia is gone', async () => {
      await id(alice, 'logout').click();
      for (const page of [alice, second]) await id(page, 'nick-input').waitFor({ state: 'visible' });
      await id(bob, 'user-alicia').waitFor({ state: 'detached' });
      assert.deepEqual(problems, []);
    });
  }));

test('a short disconnect: DMs missed meanwhile arrive, and room unread is counted once', { timeout: 120_000 }, (t) =>
  withChat('blink', [], async ({ server, browser, problems }) => {
    const { alice, bob } = await pair(browser, server, problems, { bobMobile: false });
    // bob's page can be taken off the network (see the gap test in
    // chat.test.mjs): while `__away`, a new socket asks a path that fails.
    await bob.evaluate(() => {
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
    await t.test('bob is in the DM with alice when his network goes', async () => {
      await messageUser(alice, 'bob');
      await send(alice, 'before');
      await id(bob, 'dm-alice').waitFor();
      await openDm(bob, 'alice');
      await waitMessage(bob, 'before', { from: 'alice' });
      // The server restarts; bob stays away meanwhile.
      await bob.evaluate(() => { window.__away = true; });
      await server.stop();
      await statusIs(bob, 'reconnecting');
      await server.start();
      await statusIs(alice, 'online');
      await openRoom(alice, 'general');
      await send(alice, 'room one');
      await send(alice, 'room two');
      await waitMessage(alice, 'room two', { from: 'alice' });
      await openDm(alice, 'bob');
      await send(alice, 'while you were gone');
      await waitMessage(alice, 'while you were gone', { from: 'alice' });
    });
    await t.test('back: the DM is there, and general says 2', async () => {
      await bob.evaluate(() => { window.__away = false; window.dispatchEvent(new Event('online')); });
      await statusIs(bob, 'online');
      await waitMessage(bob, 'while you were gone', { from: 'alice' });
      const badge = id(bob, 'room-general').getByTestId('unread');
      await badge.waitFor({ state: 'visible' });
      await bob.waitForTimeout(500); // room for a double count to show
      assert.equal(await badge.textContent(), '2');
      assert.deepEqual(problems, []);
    });
  }));
