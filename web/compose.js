// The composer and the message list's buttons: posting (with a reply),
// editing your own messages, deleting and reacting, "retry" on a refused
// post, jumping to a quoted message, "jump to latest" and earlier pages.
// `A` holds the app's state and rendering (see `app()` in app.js).
import { $, newId, save } from './util.js';

// A second click on "delete" within this long deletes.
const CONFIRM_MS = 4000;
const TYPING_SEND_MS = 2000;

/** Installs the composer's and the list's handlers over the app `A`;
 * returns what the rest of the app calls. */
export function composer(A) {
  const { S, current, send, target, saveDraft, renderMessages, renderJump, markRead, renderLists, toast, askNotifyOnce, member, postState } = A;

  function post(c, text, { cid = newId(), reply_to } = {}) {
    const frame = c.kind === 'room'
      ? { type: 'msg', room: c.name, text, client_id: cid }
      : { type: 'dm', to: c.name, text, client_id: cid };
    if (reply_to) frame.reply_to = reply_to;
    const p = { text, ts: Date.now(), state: 'pending', sent: false, reply_to, frame };
    c.pending.set(cid, p);
    S.inflight.set(cid, c.key);
    if (S.ready && send(frame)) p.sent = true; else S.outbox.push(frame);
    renderMessages.force = true;
    renderMessages();
  }

  /** A request about a message (edit, delete, react): a refusal comes back
   * with its client_id, and says why in a toast. */
  function request(c, frame) {
    const cid = newId();
    S.requests.set(cid, c.key);
    if (!send({ ...frame, ...target(c), client_id: cid })) { S.requests.delete(cid); toast('not connected: try again when back online'); }
  }

  function renderCompose() {
    const c = current();
    const ctx = c && c.compose;
    const bar = $('compose-ctx');
    bar.hidden = !ctx;
    if (!ctx) return;
    const m = c.msgs.get(ctx.id);
    $('compose-ctx-text').textContent = ctx.mode === 'edit' ? 'Editing your message'
      : `Replying to ${m ? m.from : 'a message'}${m && !m.deleted ? ': ' + m.text.slice(0, 60) : ''}`;
  }

  function startCompose(c, mode, id) {
    const m = c.msgs.get(id);
    if (!m) return;
    if (c.compose && c.compose.mode === 'edit') $('composer').value = S.drafts[c.key] || '';
    else saveDraft(c);
    c.compose = { mode, id };
    if (mode === 'edit') $('composer').value = m.text;
    renderCompose();
    $('composer').focus();
  }

  function endCompose(c) {
    const wasEdit = c.compose && c.compose.mode === 'edit';
    c.compose = null;
    if (wasEdit) $('composer').value = S.drafts[c.key] || '';
    renderCompose();
  }

  $('compose-cancel').addEventListener('click', () => { const c = current(); if (c) endCompose(c); $('composer').focus(); });

  $('composer-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const c = current();
    const input = $('composer');
    const text = input.value;
    if (!c || !text.trim()) return;
    if (new TextEncoder().encode(text).length > 4096) return toast('message too long (4096 bytes at most)');
    // Muted, or slow mode still counting down: the line above says so.
    const st = postState(c);
    if (st && !st.info) return;
    askNotifyOnce();
    if (c.compose && c.compose.mode === 'edit') {
      const m = c.msgs.get(c.compose.id);
      if (m && m.text !== text) request(c, { type: 'edit', id: c.compose.id, text });
      endCompose(c);
    } else {
      const reply = c.compose && c.compose.mode === 'reply' ? c.compose.id : undefined;
      post(c, text, { reply_to: reply });
      c.compose = null;
      renderCompose();
      input.value = '';
      c.dividerAt = null;
      delete S.drafts[c.key];
      save('chat.drafts', S.drafts);
    }
    input.focus();
  });

  $('composer').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $('composer-form').requestSubmit();
    } else if (e.key === 'Escape') {
      const c = current();
      if (c && c.compose) { e.preventDefault(); endCompose(c); }
    } else if (e.key === 'ArrowUp' && !$('composer').value) {
      // Up in an empty composer edits your last message.
      const c = current();
      const mine = c && [...c.msgs.values()].filter((m) => m.from === S.me && !m.deleted).sort((a, b) => b.id - a.id)[0];
      if (mine) { e.preventDefault(); startCompose(c, 'edit', mine.id); }
    }
  });

  $('composer').addEventListener('input', () => {
    const c = current();
    if (!c) return;
    saveDraft(c);
    const now = Date.now();
    if (c.kind === 'room' && S.ready && $('composer').value.trim() && now - S.lastTypingSent >= TYPING_SEND_MS) {
      S.lastTypingSent = now;
      send({ type: 'typing', room: c.name });
    }
  });

  // --- the message list's buttons

  /** Scrolls to message `id`, loading older pages until it is there. */
  function jumpTo(c, id) {
    const li = $('messages').querySelector(`li[data-id="${id}"]`);
    if (li) {
      c.jumpTo = null;
      li.scrollIntoView({ block: 'center' });
      li.classList.add('flash');
      setTimeout(() => li.classList.remove('flash'), 1600);
      li.tabIndex = -1;
      li.focus({ preventScroll: true });
      renderJump();
      return;
    }
    const oldest = c.msgs.size ? Math.min(...c.msgs.keys()) : 0;
    if (!c.more || !oldest || oldest <= id) { c.jumpTo = null; toast('that message is no longer available'); return; }
    c.jumpTo = id;
    if (!c.loadingEarlier && send({ type: 'history', ...target(c), before: oldest, limit: 100 })) {
      c.loadingEarlier = true;
      c.keepScroll = true;
    }
  }

  $('messages').addEventListener('click', (e) => {
    const b = e.target.closest('[data-action]');
    const c = current();
    if (!b || !c) return;
    const li = b.closest('li.msg');
    const action = b.dataset.action;
    if (action === 'retry') {
      const cid = li.dataset.clientId;
      const p = c.pending.get(cid);
      if (!p) return;
      c.pending.delete(cid);
      S.inflight.delete(cid);
      post(c, p.text, { reply_to: p.reply_to });
      return;
    }
    if (action === 'jump') { jumpTo(c, Number(b.dataset.target)); return; }
    if (action === 'member') { member(b.dataset.nick, b, c.kind === 'room' ? c.name : null); return; }
    const id = Number(li.dataset.id);
    const m = c.msgs.get(id);
    if (!m) return;
    if (action === 'reply') startCompose(c, 'reply', id);
    else if (action === 'edit') startCompose(c, 'edit', id);
    else if (action === 'picker') { S.picker = S.picker === id ? null : id; renderMessages(); }
    else if (action === 'react') { S.picker = null; request(c, { type: 'react', id, emoji: b.dataset.emoji }); renderMessages(); }
    else if (action === 'delete') {
      if (S.confirmDelete === id) {
        S.confirmDelete = null;
        request(c, { type: 'delete', id });
      } else {
        S.confirmDelete = id;
        setTimeout(() => { if (S.confirmDelete === id) { S.confirmDelete = null; renderMessages(); } }, CONFIRM_MS);
      }
      renderMessages();
      // The button was rebuilt: keep the focus on it.
      $('messages').querySelector(`li[data-id="${id}"] [data-action="delete"]`)?.focus();
    }
  });

  // Escape, or a click elsewhere, closes the reaction picker.
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && S.picker !== null) { S.picker = null; renderMessages(); }
  });
  document.addEventListener('click', (e) => {
    if (S.picker !== null && !e.target.closest('.picker, [data-action="picker"]')) { S.picker = null; renderMessages(); }
  });

  $('scroll').addEventListener('scroll', () => { renderJump(); markRead(); }, { passive: true });
  $('jump').addEventListener('click', () => {
    const box = $('scroll');
    box.scrollTop = box.scrollHeight;
    renderJump();
    markRead();
    $('composer').focus();
  });
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) return;
    const c = current();
    if (c) { c.unread = 0; c.mentions = 0; renderLists(); }
    markRead();
  });

  $('earlier').addEventListener('click', () => {
    const c = current();
    if (!c || !c.msgs.size || c.loadingEarlier) return;
    if (send({ type: 'history', ...target(c), before: Math.min(...c.msgs.keys()) })) {
      c.loadingEarlier = true;
      c.keepScroll = true;
      $('earlier').disabled = true;
    }
  });

  return { renderCompose, jumpTo };
}
