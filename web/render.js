// The message list of the conversation in view, rendered incrementally:
// every message, day separator and divider is a node kept per
// conversation and rebuilt only when what it shows changes, so a new
// message appends one node (and screen readers, through the separate
// live region, hear only that one). Moderation events of the room are
// notes between the messages, in the room's order (their `event_id`);
// messages of users the reader blocked are not shown. All user text goes in as textContent
// (markdown.js builds the formatting from DOM nodes).
import { el } from './util.js';
import { renderText } from './markdown.js';

// Consecutive messages from one sender this close together are one group.
const GROUP_MS = 5 * 60 * 1000;
export const EMOJI = ['👍', '❤️', '😂', '🎉', '😮', '😢'];

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', month: 'long', day: 'numeric' });
const yearFmt = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'long', day: 'numeric' });

const dayKey = (ts) => { const d = new Date(ts); return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`; };

function dayLabel(ts) {
  const d = new Date(ts);
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (d.toDateString() === today.toDateString()) return 'Today';
  if (d.toDateString() === yesterday.toDateString()) return 'Yesterday';
  return (d.getFullYear() === today.getFullYear() ? dayFmt : yearFmt).format(d);
}

function timeEl(ts) {
  const d = new Date(ts);
  return el('time', { dateTime: d.toISOString(), title: d.toLocaleString(), text: timeFmt.format(d) });
}

// A quote's one line: the text without its bold and code markers.
const snippet = (raw) => {
  const text = raw.replace(/\*\*|`+/g, '').replace(/\s+/g, ' ').trim();
  return text.length > 90 ? text.slice(0, 90) + '…' : text;
};

function button(action, label, text, extra = {}) {
  return el('button', { type: 'button', class: 'act', 'data-action': action, 'aria-label': label, title: label, text, ...extra });
}

/** One message's node. `v` holds what it shows (see `view` in renderList). */
function messageEl(m, v) {
  const li = el('li', {
    class: 'msg' + (v.mine ? ' mine' : '') + (v.cont ? ' cont' : '') + (v.mentioned ? ' mentioned' : ''),
    'data-testid': 'message', 'data-from': m.from, 'data-state': v.state,
  });
  if (m.id !== undefined) li.dataset.id = m.id;
  if (v.clientId) li.dataset.clientId = v.clientId;
  if (m.deleted) li.dataset.deleted = 'true';
  // Someone else's nick opens their member menu (moderation.js).
  const from = v.mine || v.state !== 'sent' ? el('span', { class: 'from', text: m.from })
    : el('button', { type: 'button', class: 'from', 'data-action': 'member', 'data-nick': m.from, 'aria-haspopup': 'menu', 'aria-expanded': 'false', text: m.from });
  const meta = el('div', { class: 'meta' }, from, m.guest ? guestTag() : null, timeEl(m.ts));
  if (m.edited_ts && !m.deleted) meta.append(el('span', { class: 'edited', 'data-testid': 'edited', title: new Date(m.edited_ts).toLocaleString(), text: '(edited)' }));
  if (v.state === 'pending') meta.append(el('span', { class: 'state', text: 'sending…' }));
  if (v.state === 'failed') {
    meta.append(el('span', { class: 'state', text: v.why ? `not sent: ${v.why}` : 'not sent' }),
      button('retry', 'retry sending', 'retry', { 'data-testid': 'retry', class: 'act retry-btn' }));
  }
  li.append(meta);
  if (m.reply_to && !m.deleted) {
    const q = v.quote;
    li.append(el('button', {
      type: 'button', class: 'quote', 'data-action': 'jump', 'data-target': String(m.reply_to), 'data-testid': 'quote',
      title: 'go to the message replied to',
    }, el('span', { class: 'sr', text: 'in reply to ' }), el('span', { class: 'quote-from', text: q ? q.from : '↩' }),
    el('span', { class: 'quote-text', text: !q ? 'an earlier message' : q.deleted ? 'message deleted' : snippet(q.text) })));
  }
  const text = el('div', { class: 'text' + (m.deleted ? ' tombstone' : '') });
  if (m.deleted) text.textContent = 'message deleted';
  else text.append(renderText(m.text, v.me));
  li.append(text);
  const reactions = m.reactions && !m.deleted ? Object.entries(m.reactions).filter(([, users]) => users.length) : [];
  if (reactions.length) {
    li.append(el('div', { class: 'reactions' }, ...reactions.map(([emoji, users]) => el('button', {
      type: 'button', class: 'reaction', 'data-action': 'react', 'data-emoji': emoji, 'data-testid': 'reaction',
      'aria-pressed': String(users.includes(v.me)), title: users.join(', '),
      'aria-label': `${emoji} ${users.length}: ${users.join(', ')}`,
    }, el('span', { text: emoji }), el('span', { class: 'count', text: String(users.length) })))));
  }
  if (v.state === 'sent' && !m.deleted) {
    const acts = el('div', { class: 'actions' },
      button('reply', 'reply', '↩', { 'data-testid': 'reply' }),
      button('picker', 'add a reaction', '☺', { 'data-testid': 'react', 'aria-expanded': String(v.picker) }));
    if (v.mine) acts.append(button('edit', 'edit', '✎', { 'data-testid': 'edit' }));
    // Moderators delete anyone's message.
    if (v.mine || v.moderate) {
      acts.append(v.confirmDelete ? button('delete', 'really delete', 'delete?', { 'data-testid': 'delete', class: 'act danger' })
        : button('delete', 'delete', '🗑', { 'data-testid': 'delete' }));
    }
    li.append(acts);
    if (v.picker) {
      li.append(el('div', { class: 'picker', role: 'group', 'aria-label': 'reactions', 'data-testid': 'picker' },
        ...EMOJI.map((e) => el('button', { type: 'button', class: 'act', 'data-action': 'react', 'data-emoji': e, 'aria-label': `react ${e}`, text: e }))));
    }
  }
  if (v.seen.length) li.append(el('div', { class: 'seen', 'data-testid': 'seen', text: `seen by ${v.seen.join(', ')}` }));
  return li;
}

/** The marker beside a guest's nick (the nick is not an account's). */
export const guestTag = () => el('span', { class: 'tag guest', 'data-testid': 'guest-tag', title: 'a guest: this nick is not an account', text: 'guest' });

/** The items of conversation `c` in order: its messages and notes, then
 * its pending posts, with day separators and the "new messages" divider;
 * none from the users in `blocked`. */
function items(c, me, blocked) {
  const out = [];
  const ids = [...c.msgs.keys()].filter((i) => !(blocked && blocked.has(c.msgs.get(i).from))).sort((a, b) => a - b);
  // Where each other reader's last read falls: the newest shown id at or
  // before it.
  const seenAt = new Map();
  for (const [user, upTo] of c.receipts || []) {
    if (user === me) continue;
    let at = null;
    for (const i of ids) { if (i <= upTo) at = i; else break; }
    if (at === null) continue;
    if (!seenAt.has(at)) seenAt.set(at, []);
    seenAt.get(at).push(user);
  }
  let prev = null;
  const push = (m, base) => {
    const day = dayKey(m.ts);
    if (!prev || dayKey(prev.ts) !== day) out.push({ key: 'd' + day, day: m.ts });
    let divider = false;
    if (base.id !== undefined && c.dividerAt && base.id === c.dividerAt) { out.push({ key: 'new', divider: true }); divider = true; }
    const cont = !!prev && !divider && prev.from === m.from && dayKey(prev.ts) === day && m.ts - prev.ts < GROUP_MS && !prev.deleted && !m.reply_to;
    out.push({ ...base, m, cont });
    prev = m;
  };
  const notes = c.notes ? [...c.notes.values()].sort((a, b) => a.id - b.id) : [];
  let n = 0;
  const note = (upTo) => {
    for (; n < notes.length && notes[n].id < upTo; n++) {
      const x = notes[n];
      if (!prev || dayKey(prev.ts) !== dayKey(x.ts)) out.push({ key: 'd' + dayKey(x.ts), day: x.ts });
      out.push({ key: 'n' + x.id, note: x });
      prev = { from: null, ts: x.ts };
    }
  };
  for (const id of ids) {
    note(id);
    const m = c.msgs.get(id);
    const quote = m.reply_to ? c.msgs.get(m.reply_to) : null;
    push(m, {
      key: 'm' + id, id, state: 'sent',
      quote: quote ? { from: quote.from, text: quote.text, deleted: !!quote.deleted } : null,
      // An author has seen their own message: not worth saying.
      seen: (seenAt.get(id) || []).filter((u) => u !== m.from).sort(),
    });
  }
  note(Infinity);
  for (const [cid, p] of c.pending) {
    push({ from: me, text: p.text, ts: p.ts, reply_to: p.reply_to }, { key: 'p' + cid, clientId: cid, state: p.state, why: p.why, seen: [], quote: null });
  }
  return out;
}

/**
 * Brings `list` (an `<ol>`) up to date with conversation `c`, reusing the
 * nodes of what has not changed. `ui` holds the reader's nick (`me`), the
 * message whose reaction picker is open (`picker`) and the one whose
 * delete awaits confirmation (`confirmDelete`).
 */
export function renderList(list, c, ui) {
  if (!c) { list.replaceChildren(); return; }
  if (!c.nodes) c.nodes = new Map();
  const keep = new Map();
  const nodes = [];
  for (const it of items(c, ui.me, ui.blocked)) {
    let view;
    if (it.day !== undefined) view = { day: dayLabel(it.day) };
    else if (it.divider) view = { divider: true };
    else if (it.note) view = { note: it.note.text, action: it.note.action };
    else {
      const m = it.m;
      view = {
        state: it.state, why: it.why, clientId: it.clientId, cont: it.cont, quote: it.quote, seen: it.seen, me: ui.me,
        mine: m.from === ui.me, mentioned: !!m.mentioned, moderate: !!ui.moderate && m.from !== ui.me,
        picker: it.id !== undefined && ui.picker === it.id, confirmDelete: it.id !== undefined && ui.confirmDelete === it.id,
        m: [m.text, m.edited_ts, m.deleted, m.reactions, m.reply_to, m.guest],
      };
    }
    const sig = JSON.stringify(view);
    let entry = c.nodes.get(it.key);
    if (!entry || entry.sig !== sig) {
      let node;
      // Plain list items: an <ol> holds only those (no role="separator").
      if (view.day) node = el('li', { class: 'day', 'data-testid': 'day', text: view.day });
      else if (view.divider) node = el('li', { class: 'divider', 'data-testid': 'new-divider', text: 'new messages' });
      else if (view.note) node = el('li', { class: 'note', 'data-testid': 'mod-note', 'data-action': view.action, text: view.note });
      else node = messageEl(it.m, view);
      entry = { sig, node };
    }
    keep.set(it.key, entry);
    nodes.push(entry.node);
  }
  c.nodes = keep;
  // Move only what is out of place: unchanged nodes stay where they are.
  let at = list.firstChild;
  for (const node of nodes) {
    if (at === node) { at = at.nextSibling; continue; }
    list.insertBefore(node, at);
  }
  while (at) { const next = at.nextSibling; at.remove(); at = next; }
}
