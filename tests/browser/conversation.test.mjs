// A conversation rather than a stream (issue 16), in a real Chromium with
// two users: edit, delete, reactions and replies (jumping to the message
// replied to, loading history when needed), and what survives a reload.
// Run through scripts/browser-test.sh (or `node --test tests/browser/`
// with a built server).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WAIT, budget, id, pair, send, shown, statusIs, waitMessage, withChat } from './harness.mjs';

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
