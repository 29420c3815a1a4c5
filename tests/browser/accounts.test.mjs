// Accounts and moderation in the page (issue 17), in a real Chromium on a
// fresh server with `--accounts open`: two users sign up in two browser
// contexts (a weak password refused beside its field first), log out and
// in again; a stale token is refreshed before the page connects, and a
// logout in another tab (4005) brings this one back to the login form; a guest sees the guest banner and carries the guest marker; a
// guest cannot take an account's nick. The owner of a fresh room (its
// first member) sees exactly the owner's actions in a member's menu, the
// member sees none; the owner mutes the member (whose composer says so,
// and whose posts the server refuses), then kicks them (they leave the
// member list), and the audit panel lists both. The owner of general sets
// its topic and slow mode (bob's composer counts down) and makes bob a
// moderator; alice blocks him (his messages leave her view) and unblocks
// him; an admin (`chat admin add`) bans him from the server, and
// his page says so (4004). axe-core checks the new dialogs and panels. Run through scripts/browser-test.sh (or, with a
// built server, `node --test tests/browser/accounts.test.mjs`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { SERVER, WAIT, budget, id, openRoom, send, sideClick, signIn, statusIs, waitMessage, watchProblems, withChat } from './harness.mjs';

budget(300);

const PASSWORD = { alice: 'correct horse battery', bob: 'tr0ub4dor and 3' };

const axeSource = readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
async function axe(page) {
  await page.evaluate(await axeSource);
  const res = await page.evaluate(() => window.axe.run(document));
  return res.violations.flatMap((v) => v.nodes.map((n) => `${v.id} ${n.target.join(' ')}: ${[...n.any, ...n.all, ...n.none].map((a) => a.message).join('; ')}`));
}

async function context(browser) {
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  ctx.setDefaultTimeout(WAIT);
  return ctx;
}

/** From the guest's nick dialog to the account form, in `mode`. */
async function openAccountForm(page, base, mode) {
  await page.goto(base);
  await id(page, 'nick-input').waitFor({ state: 'visible' });
  await id(page, mode === 'signup' ? 'nick-to-signup' : 'nick-to-login').click();
  await id(page, 'auth-dialog').waitFor({ state: 'visible' });
}

async function fillAccount(page, nick, password) {
  await id(page, 'auth-nick').fill(nick);
  await id(page, 'auth-password').fill(password);
  await id(page, 'auth-submit').click();
}

async function signedInAs(page, nick) {
  await statusIs(page, 'online');
  assert.equal(await id(page, 'me').textContent(), nick);
  assert.ok(await id(page, 'guest-banner').isHidden(), `${nick} is no guest`);
}

/** The test ids of the items in the open member menu. */
const menuItems = (page) => page.$$eval('#member-menu-items [role="menuitem"]', (els) => els.map((e) => e.dataset.testid));

async function openMenu(page, nick) {
  await sideClick(page, id(page, `user-${nick}`).locator('button'));
  await id(page, 'member-menu').waitFor({ state: 'visible' });
}

async function joinRoom(page, room) {
  await id(page, 'join-input').fill(room);
  await id(page, 'join-submit').click();
  await id(page, `room-${room}`).waitFor();
  assert.equal(await id(page, 'title').textContent(), `#${room}`);
}

test('accounts: sign up, log out and in, a guest, and an owner who mutes and kicks', { timeout: 240_000 }, (t) =>
  withChat('accounts', ['--accounts', 'open', '--account-requests-per-minute', '60'], async ({ server, browser, problems }) => {
    const actx = await context(browser);
    const bctx = await context(browser);
    const alice = await actx.newPage();
    const bob = await bctx.newPage();
    watchProblems(alice, 'alice', problems);
    watchProblems(bob, 'bob', problems);

    await t.test('a weak password is refused, in words, beside the password field', async () => {
      await openAccountForm(alice, server.base, 'signup');
      await fillAccount(alice, 'alice', '1234567890');
      const err = id(alice, 'auth-password-error');
      await err.waitFor({ state: 'visible' });
      assert.match(await err.textContent(), /too easy to guess/);
      assert.equal(await id(alice, 'auth-password').getAttribute('aria-invalid'), 'true');
      assert.ok(await id(alice, 'auth-nick-error').isHidden());
      assert.ok(await id(alice, 'status').textContent() !== 'online');
      const found = await axe(alice);
      assert.deepEqual(found, [], found.join('\n'));
    });

    await t.test('two users sign up, each in their own browser', async () => {
      await fillAccount(alice, 'alice', PASSWORD.alice);
      await signedInAs(alice, 'alice');
      await openAccountForm(bob, server.base, 'signup');
      await fillAccount(bob, 'bob', PASSWORD.bob);
      await signedInAs(bob, 'bob');
      assert.ok(await id(alice, 'rename-input').isHidden(), 'an account\'s nick is its own: no rename');
      await id(alice, 'change-password').waitFor();
      const kept = await alice.evaluate(() => ({ token: !!localStorage.getItem('chat.token'), refresh: !!localStorage.getItem('chat.refresh') }));
      assert.deepEqual(kept, { token: true, refresh: true });
      await id(alice, 'user-bob').waitFor();
      assert.ok(await id(alice, 'user-bob').getByTestId('guest-tag').count() === 0, 'bob has an account');
    });

    await t.test('a taken nick is refused beside the nick field', async () => {
      const ctx = await context(browser);
      const page = await ctx.newPage();
      watchProblems(page, 'mallory', problems);
      await openAccountForm(page, server.base, 'signup');
      await fillAccount(page, 'alice', 'some other long password');
      await id(page, 'auth-nick-error').waitFor({ state: 'visible' });
      assert.match(await id(page, 'auth-nick-error').textContent(), /already registered/);
      await ctx.close();
    });

    await t.test('log out, and log in again', async () => {
      await id(alice, 'logout').click();
      await id(alice, 'nick-input').waitFor({ state: 'visible' });
      assert.equal(await alice.evaluate(() => localStorage.getItem('chat.token')), null, 'the token is forgotten');
      await id(alice, 'nick-to-login').click();
      await fillAccount(alice, 'alice', 'not the password at all');
      await id(alice, 'auth-error').waitFor({ state: 'visible' });
      assert.equal(await id(alice, 'auth-error').textContent(), 'Wrong nick or password.');
      await fillAccount(alice, 'alice', PASSWORD.alice);
      await signedInAs(alice, 'alice');
    });

    await t.test('a stale token is refreshed before connecting; a logout in another tab (4005) says so here', async () => {
      const tab = await actx.newPage();
      watchProblems(tab, 'alice-2', problems);
      await tab.goto(server.base);
      await signedInAs(tab, 'alice');
      // The refresh token is random (an access token issued within the
      // same second as the last is the same bytes): it says a refresh ran.
      const before = await tab.evaluate(() => localStorage.getItem('chat.refresh'));
      // As if the hour had passed: the page refreshes first, then connects.
      await tab.evaluate(() => localStorage.setItem('chat.expires', String(Date.now() - 1000)));
      await tab.reload();
      await signedInAs(tab, 'alice');
      const after = await tab.evaluate(() => ({ refresh: localStorage.getItem('chat.refresh'), expires: Number(localStorage.getItem('chat.expires')) }));
      assert.notEqual(after.refresh, before, 'a new pair');
      assert.ok(after.expires > Date.now() + 30 * 60_000, 'good for most of an hour');
      await id(tab, 'logout').click();
      await id(tab, 'nick-input').waitFor({ state: 'visible' });
      // The first tab's connection was of that session: closed with 4005.
      await id(alice, 'auth-dialog').waitFor({ state: 'visible' });
      assert.match(await id(alice, 'auth-why').textContent(), /You were logged out/);
      assert.equal(await id(alice, 'auth-nick').inputValue(), 'alice');
      await id(alice, 'auth-password').fill(PASSWORD.alice);
      await id(alice, 'auth-submit').click();
      await signedInAs(alice, 'alice');
      await tab.close();
    });

    await t.test('a guest: the banner, the marker, and no account nick', async () => {
      const ctx = await context(browser);
      const page = await ctx.newPage();
      watchProblems(page, 'carol', problems);
      await page.goto(server.base);
      await id(page, 'nick-input').fill('alice');
      await id(page, 'nick-submit').click();
      await id(page, 'nick-error').waitFor({ state: 'visible' });
      assert.match(await id(page, 'nick-error').textContent(), /belongs to an account/);
      await signIn(page, server.base, 'carol');
      await id(page, 'guest-banner').waitFor({ state: 'visible' });
      await id(page, 'user-carol').getByTestId('guest-tag').waitFor();
      assert.equal(await id(page, 'user-carol').locator('.tag').count(), 1, 'one tag: guest');
      assert.match(await id(page, 'guest-banner').textContent(), /You are a guest: sign up to keep this nick/);
      await id(alice, 'user-carol').getByTestId('guest-tag').waitFor();
      await send(page, 'hello from a guest');
      const msg = alice.locator('[data-testid="message"][data-from="carol"]');
      await msg.getByTestId('guest-tag').waitFor();
      const found = await axe(page);
      assert.deepEqual(found, [], found.join('\n'));
      await ctx.close();
    });

    await t.test('the owner of a fresh room has the owner\'s actions, the member none', async () => {
      await joinRoom(alice, 'den');
      await joinRoom(bob, 'den');
      await id(alice, 'user-bob').waitFor();
      await id(alice, 'room-settings').waitFor({ state: 'visible' });
      assert.ok(await id(bob, 'room-settings').isHidden(), 'a member has no room settings');
      await id(bob, 'user-alice').getByTestId('role-tag').filter({ hasText: 'owner' }).waitFor();
      await openMenu(alice, 'bob');
      assert.deepEqual(await menuItems(alice), ['menu-dm', 'menu-block', 'menu-kick', 'menu-mute', 'menu-ban', 'menu-make-moderator']);
      assert.equal(await alice.evaluate(() => document.activeElement?.dataset.testid), 'menu-dm', 'the menu takes the focus');
      await alice.keyboard.press('ArrowDown');
      assert.equal(await alice.evaluate(() => document.activeElement?.dataset.testid), 'menu-block');
      const found = await axe(alice);
      assert.deepEqual(found, [], found.join('\n'));
      await alice.keyboard.press('Escape');
      await id(alice, 'member-menu').waitFor({ state: 'hidden' });
      assert.equal(await alice.evaluate(() => document.activeElement?.closest('[data-testid]')?.dataset.testid), 'user-bob', 'focus back on the nick');
      await openMenu(bob, 'alice');
      assert.deepEqual(await menuItems(bob), ['menu-dm', 'menu-block']);
      await bob.keyboard.press('Escape');
    });

    await t.test('the owner mutes bob: his composer says so, and his posts are refused', async () => {
      await openMenu(alice, 'bob');
      await id(alice, 'menu-mute').click();
      await id(alice, 'mod-dialog').waitFor({ state: 'visible' });
      await id(alice, 'mod-duration').selectOption({ label: '1 hour' });
      await id(alice, 'mod-reason').fill('cool down');
      await id(alice, 'mod-confirm').click();
      const state = id(bob, 'compose-state');
      await state.waitFor({ state: 'visible' });
      assert.match(await state.textContent(), /^You are muted in #den until \d{1,2}:\d{2}/);
      assert.ok(await id(bob, 'composer').isDisabled());
      await alice.getByTestId('mod-note').filter({ hasText: 'muted bob' }).waitFor();
      // The server refuses bob's post, whatever the page does: a second
      // connection of his, with his token, tries.
      const codes = await bob.evaluate(() => new Promise((resolve, reject) => {
        const ws = new WebSocket(`ws://${location.host}/ws`);
        const seen = [];
        const timer = setTimeout(() => reject(new Error(`no refusal: ${JSON.stringify(seen)}`)), 10_000);
        ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', token: JSON.parse(localStorage.getItem('chat.token')) }));
        ws.onmessage = (e) => {
          const m = JSON.parse(e.data);
          seen.push(m.type === 'error' ? m.code : m.type);
          if (m.type === 'welcome') ws.send(JSON.stringify({ type: 'join', room: 'den' }));
          if (m.type === 'history' && m.room === 'den') ws.send(JSON.stringify({ type: 'msg', room: 'den', text: 'can I talk?', client_id: 'x1' }));
          if (m.type === 'error' && m.client_id === 'x1') { clearTimeout(timer); ws.close(); resolve(seen); }
          if (m.type === 'ack') { clearTimeout(timer); ws.close(); resolve(seen); }
        };
      }));
      assert.equal(codes[codes.length - 1], 'muted', `the post is refused as muted: ${codes}`);
      assert.equal(await alice.locator('[data-testid="message"]').filter({ hasText: 'can I talk?' }).count(), 0);
    });

    await t.test('the owner kicks bob: he leaves the member list, and is told', async () => {
      await openMenu(alice, 'bob');
      await id(alice, 'menu-kick').click();
      await id(alice, 'mod-confirm').click();
      await id(alice, 'user-bob').waitFor({ state: 'detached' });
      await id(bob, 'notice').filter({ hasText: 'removed you from #den' }).waitFor();
      await id(bob, 'room-den').waitFor({ state: 'detached' });
    });

    await t.test('the audit panel lists the mute and the kick', async () => {
      await id(alice, 'room-settings').click();
      await id(alice, 'room-dialog').waitFor({ state: 'visible' });
      const entry = (action) => id(alice, 'audit').locator(`[data-testid="audit-entry"][data-action="${action}"][data-user="bob"]`);
      await entry('kick').waitFor();
      await entry('mute').waitFor();
      assert.match(await entry('mute').textContent(), /alice muted bob/);
      const found = await axe(alice);
      assert.deepEqual(found, [], found.join('\n'));
      await id(alice, 'room-close').click();
    });

    await t.test('a kicked member still talks elsewhere', async () => {
      await openRoom(bob, 'general');
      await send(bob, 'back in general');
      await openRoom(alice, 'general');
      await waitMessage(alice, 'back in general', { from: 'bob' });
    });

    await t.test('the owner of general sets its topic and slow mode; bob sees both, and a countdown', async () => {
      // alice was general's first verified member: its owner.
      await id(alice, 'room-settings').click();
      await id(alice, 'topic-input').fill('Be kind');
      await id(alice, 'topic-save').click();
      await id(bob, 'topic').filter({ hasText: 'Be kind' }).waitFor();
      await id(alice, 'slow-select').selectOption('30');
      await id(alice, 'slow-save').click();
      await id(alice, 'room-close').click();
      const state = id(bob, 'compose-state');
      await state.filter({ hasText: 'one message every 30 s' }).waitFor();
      await send(bob, 'one under slow mode');
      await waitMessage(alice, 'one under slow mode', { from: 'bob' });
      await send(bob, 'two under slow mode');
      await state.filter({ hasText: /^Slow mode: you can post again in \d+ s\.$/ }).waitFor();
      await waitMessage(bob, 'two under slow mode', { from: 'bob', state: 'failed' });
      await alice.getByTestId('mod-note').filter({ hasText: 'slow mode on' }).waitFor();
    });

    await t.test('the owner deletes bob\'s message: everyone sees the tombstone', async () => {
      const theirs = alice.locator('[data-testid="message"][data-from="bob"]').filter({ hasText: 'one under slow mode' });
      await theirs.hover();
      await theirs.getByTestId('delete').click();
      await theirs.getByTestId('delete').click();
      await bob.locator('[data-testid="message"][data-deleted="true"]').waitFor();
      assert.equal(await bob.locator('[data-testid="message"][data-from="alice"] [data-testid="delete"]').count(), 0);
    });

    await t.test('the owner makes bob a moderator: the list says so, and he gets the room settings', async () => {
      await openMenu(alice, 'bob');
      await id(alice, 'menu-make-moderator').click();
      await id(alice, 'user-bob').getByTestId('role-tag').filter({ hasText: 'mod' }).waitFor();
      await id(bob, 'room-settings').waitFor({ state: 'visible' });
      await openMenu(bob, 'alice');
      assert.deepEqual(await menuItems(bob), ['menu-dm', 'menu-block'], 'a moderator cannot act on the owner');
      await bob.keyboard.press('Escape');
    });

    await t.test('alice blocks bob: his messages leave her view, the menu offers to unblock', async () => {
      await send(bob, 'a word from bob');
      await waitMessage(alice, 'a word from bob', { from: 'bob' });
      await openMenu(alice, 'bob');
      await id(alice, 'menu-block').click();
      await alice.waitForFunction(() => !document.querySelector('[data-testid="message"][data-from="bob"]'));
      await send(bob, 'unseen by alice');
      await waitMessage(bob, 'unseen by alice', { from: 'bob' });
      await openMenu(alice, 'bob');
      assert.ok((await menuItems(alice)).includes('menu-unblock'));
      await id(alice, 'menu-unblock').click();
      await waitMessage(alice, 'a word from bob', { from: 'bob' });
      assert.equal(await alice.locator('[data-testid="message"]').filter({ hasText: 'unseen by alice' }).count(), 0, 'the server never sent it');
    });

    await t.test('an admin bans bob from the server: his page says so (4004)', async () => {
      const admin = spawnSync(SERVER, ['chat', '--db', server.db, 'admin', 'add', 'alice'], { encoding: 'utf8' });
      assert.equal(admin.status, 0, admin.stderr);
      await alice.reload();
      await statusIs(alice, 'online');
      await openMenu(alice, 'bob');
      assert.ok((await menuItems(alice)).includes('menu-make-owner'), 'an admin names owners');
      await id(alice, 'menu-ban').click();
      await id(alice, 'mod-scope').selectOption('server');
      await id(alice, 'mod-confirm').click();
      await id(bob, 'notice').filter({ hasText: 'You are banned from this server.' }).waitFor();
      await statusIs(bob, 'offline');
      await id(alice, 'user-bob').waitFor({ state: 'detached' });
    });

    await t.test('change password: a wrong current one is refused beside it; the new one logs in', async () => {
      await id(alice, 'change-password').click();
      await id(alice, 'password-dialog').waitFor({ state: 'visible' });
      await id(alice, 'pw-old').fill('not my password!');
      await id(alice, 'pw-new').fill('a brand new passphrase');
      await id(alice, 'pw-submit').click();
      await id(alice, 'pw-old-error').waitFor({ state: 'visible' });
      assert.match(await id(alice, 'pw-old-error').textContent(), /not your current password/);
      await id(alice, 'pw-old').fill(PASSWORD.alice);
      await id(alice, 'pw-submit').click();
      await id(alice, 'password-dialog').waitFor({ state: 'hidden' });
      await alice.getByTestId('toast').filter({ hasText: 'Password changed' }).waitFor();
      await id(alice, 'logout').click();
      await id(alice, 'nick-to-login').click();
      await fillAccount(alice, 'alice', 'a brand new passphrase');
      await signedInAs(alice, 'alice');
      assert.deepEqual(problems, []);
    });

    await t.test('too many failed logins: the form says how long to wait, and waits', async () => {
      const ctx = await context(browser);
      const page = await ctx.newPage();
      watchProblems(page, 'eve', problems);
      await openAccountForm(page, server.base, 'login');
      const err = id(page, 'auth-error');
      let text = '';
      for (let i = 0; i < 12 && !/Too many/.test(text); i++) {
        await fillAccount(page, 'carol-account', `guess number ${i}`);
        await err.filter({ hasText: /Wrong nick or password|Too many/ }).waitFor();
        text = await err.textContent();
        if (!/Too many/.test(text)) await page.evaluate(() => { document.getElementById('auth-error').hidden = true; document.getElementById('auth-error').textContent = ''; });
      }
      assert.match(text, /^Too many attempts: try again in \d+ s\.$/);
      assert.ok(await id(page, 'auth-submit').isDisabled(), 'no submit while the wait runs');
      assert.deepEqual(problems, []);
      await ctx.close();
    });
  }));
