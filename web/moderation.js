// Roles and moderation in the page (docs/PROTOCOL.md, "Moderation"): the
// `room` event's topic, slow mode and roles; `moderation` events, as
// notes in the timeline and as state (who is muted, the reader's own
// mute); the member menu (a nick in the member list or on a message)
// with exactly the actions the reader's role allows; the room's settings
// (topic, slow mode) and, for its owners, the audit log; blocking.
// `A` holds the app's state and rendering (see `app()` in app.js).
import { $, el, NICK_RE } from './util.js';

// Who may do what in a room, by the lowest role that may: the table of
// docs/PROTOCOL.md, "Moderation" (the server decides; this only keeps the
// page from offering what it would refuse).
const RANK = { guest: 0, member: 0, moderator: 1, owner: 2, admin: 3 };
const MAY = {
  kick: 'moderator', mute: 'moderator', ban: 'moderator', delete: 'moderator',
  topic: 'moderator', slow: 'moderator', moderator: 'owner', audit: 'owner', owner: 'admin', server_ban: 'admin',
};
const rank = (role) => RANK[role] ?? 0;

// The durations offered, in minutes (null: until lifted).
const MUTE_FOR = [[5, '5 minutes'], [60, '1 hour'], [1440, '1 day'], [null, 'until unmuted']];
const BAN_FOR = [[60, '1 hour'], [1440, '1 day'], [10080, '1 week'], [null, 'until lifted']];
const SLOW = [[0, 'off'], [5, '5 s'], [10, '10 s'], [30, '30 s'], [60, '1 minute'], [300, '5 minutes']];
const AUDIT_PAGE = 50;

const clockFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const longFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
/** "14:05" today, "Dec 3, 14:05" on another day. */
export function when(ts) {
  const d = new Date(ts);
  return d.toDateString() === new Date().toDateString() ? clockFmt.format(d) : longFmt.format(d);
}

/** The room's moderation state kept on conversation `c`. */
export function modOf(c) {
  if (!c.mod) c.mod = { topic: '', slow: 0, owners: [], moderators: [], role: 'member', mutedUntil: null, muted: new Map(), slowUntil: 0, known: false };
  return c.mod;
}

/** A moderation event, in a sentence (for the timeline and the audit log). */
export function describe(m) {
  const who = m.user || 'someone';
  const until = typeof m.until === 'number' ? ` until ${when(m.until)}` : '';
  const why = typeof m.reason === 'string' && m.reason ? ` (${m.reason})` : '';
  switch (m.action) {
    case 'kick': return `${m.by} removed ${who} from the room${why}`;
    case 'ban': return `${m.by} banned ${who}${m.room ? '' : ' from the server'}${until || ' until lifted'}${why}`;
    case 'unban': return `${m.by} lifted the ban on ${who}`;
    case 'mute': return `${m.by} muted ${who}${until || ' until unmuted'}${why}`;
    case 'unmute': return `${m.by} unmuted ${who}`;
    case 'slow': return m.seconds ? `${m.by} turned slow mode on: one message every ${m.seconds} s` : `${m.by} turned slow mode off`;
    case 'topic': return m.topic ? `${m.by} set the topic: ${m.topic}` : `${m.by} cleared the topic`;
    case 'role':
      // A room's first verified member owns it (a role event by itself).
      if (m.by === m.user && m.role === 'owner') return `${m.by} opened the room and owns it`;
      return m.role === 'member' ? `${m.by} made ${who} a member again` : `${m.by} made ${who} ${m.role === 'owner' ? 'an owner' : 'a moderator'}`;
    case 'delete': return `${m.by} deleted a message by ${who}`;
    default: return `${m.by || 'a moderator'}: ${m.action}${m.user ? ' ' + m.user : ''}`;
  }
}

const AUDIT_VERB = {
  kick: 'removed', ban: 'banned', unban: 'lifted the ban on', mute: 'muted', unmute: 'unmuted', slow: 'set slow mode',
  topic: 'set the topic', role: 'gave a role to', delete: 'deleted a message', admin_add: 'made an admin:', admin_remove: 'removed an admin:',
};

/** An audit entry in words; its `detail` is the server's text (a reason,
 * "until <ms>", a topic, a role), its times shown as times. */
function auditLine(e) {
  if (e.action === 'role' && e.by === e.user && e.detail === 'owner') return `${e.by} opened the room and owns it`;
  const detail = typeof e.detail === 'string' ? e.detail.replace(/until (\d{10,})/g, (_, ms) => `until ${when(Number(ms))}`) : '';
  return `${e.by} ${AUDIT_VERB[e.action] || e.action}${e.user ? ' ' + e.user : ''}${detail ? ': ' + detail : ''}`;
}

/** Why a post was refused, in words (the server's message with its
 * times as times), for `muted` and `slow_mode`; null for other codes. */
export function refusal(m) {
  if (m.code !== 'muted' && m.code !== 'slow_mode') return null;
  return (m.message || m.code).replace(/until (\d{10,})/g, (_, ms) => `until ${when(Number(ms))}`);
}

export function moderation(A) {
  const { S, conv, current, send, renderAll, renderMessages, notice, toast } = A;
  const menu = { open: false, nick: null, room: null, opener: null };
  const dialog = { action: null, nick: null, room: null };
  const audit = { room: null, entries: [], more: false, loading: false };

  const roomConv = (room) => (typeof room === 'string' && S.rooms.includes(room) ? conv('#' + room) : null);
  const roleIn = (c, nick) => {
    const mod = modOf(c);
    return nick === S.me ? mod.role : mod.owners.includes(nick) ? 'owner' : mod.moderators.includes(nick) ? 'moderator' : 'member';
  };
  /** Whether the reader may do `what` in room conversation `c`. */
  const may = (c, what) => !!c && c.kind === 'room' && rank(modOf(c).role) >= rank(MAY[what]);
  const isGuest = (c, nick) => !!(c.guests && c.guests.has(nick));

  /** The reader's mute in `c`, if it is still running: its end (Infinity: until lifted). */
  function mutedUntil(c) {
    const mod = c && c.kind === 'room' ? modOf(c) : null;
    if (!mod || mod.mutedUntil === null) return null;
    if (mod.mutedUntil !== Infinity && mod.mutedUntil <= Date.now()) { mod.mutedUntil = null; return null; }
    return mod.mutedUntil;
  }

  // --- the composer: muted, slow mode

  let tick = null;
  /** Why the reader cannot post in `c` now (null: they can), and whether
   * the composer is closed for it (a mute) or only waits (slow mode). */
  function postState(c) {
    const until = mutedUntil(c);
    if (until !== null) {
      return { closed: true, text: until === Infinity ? `You are muted in #${c.name} until a moderator unmutes you.` : `You are muted in #${c.name} until ${when(until)}.` };
    }
    // Moderators and up are not slowed.
    const mod = c && c.kind === 'room' && rank(modOf(c).role) < rank('moderator') ? modOf(c) : null;
    if (mod && mod.slowUntil > Date.now()) {
      return { closed: false, text: `Slow mode: you can post again in ${Math.ceil((mod.slowUntil - Date.now()) / 1000)} s.` };
    }
    if (mod && mod.slow > 0) return { closed: false, info: true, text: `Slow mode is on: one message every ${mod.slow} s.` };
    return null;
  }

  /** The line above the composer; re-rendered every second while it counts down. */
  function renderState() {
    clearTimeout(tick);
    const c = current();
    const st = c ? postState(c) : null;
    const line = $('compose-state');
    line.textContent = st ? st.text : '';
    line.hidden = !st;
    line.dataset.state = !st ? '' : st.closed ? 'muted' : st.info ? 'slow-info' : 'slow';
    const mod = c && c.kind === 'room' ? modOf(c) : null;
    const until = mutedUntil(c);
    const next = until !== null && until !== Infinity ? until : mod && mod.slowUntil > Date.now() ? Date.now() + 1000 : 0;
    if (next) tick = setTimeout(() => { A.setComposerEnabled(); }, Math.min(1000, Math.max(50, next - Date.now())));
    return st;
  }

  // --- events

  /** `room`: the room's topic, slow mode and roles, and the reader's. */
  function onRoom(m) {
    const c = roomConv(m.room);
    if (!c) return;
    const mod = modOf(c);
    mod.known = true;
    mod.topic = typeof m.topic === 'string' ? m.topic : '';
    mod.slow = typeof m.slow === 'number' ? m.slow : 0;
    mod.owners = Array.isArray(m.owners) ? m.owners : [];
    mod.moderators = Array.isArray(m.moderators) ? m.moderators : [];
    const you = m.you && typeof m.you === 'object' ? m.you : {};
    mod.role = typeof you.role === 'string' ? you.role : 'member';
    // 0: until lifted.
    mod.mutedUntil = typeof you.muted_until === 'number' ? (you.muted_until === 0 ? Infinity : you.muted_until) : null;
    renderAll();
    renderRoomDialog();
  }

  /** `moderation`: an action taken, seen by everyone in the room. */
  function onModeration(m) {
    if (typeof m.action !== 'string') return;
    const me = m.user === S.me;
    if (!m.room) {
      // Server-wide: only a ban or its lifting; a ban of ours closes with 4004.
      if (me && m.action === 'ban') notice('You are banned from this server.');
      return;
    }
    const c = roomConv(m.room);
    if (!c) return;
    if (typeof m.event_id === 'number') {
      if (m.event_id > c.lastSeen) c.lastSeen = m.event_id;
      if (!c.notes) c.notes = new Map();
      c.notes.set(m.event_id, { id: m.event_id, ts: typeof m.ts === 'number' ? m.ts : Date.now(), text: describe(m), action: m.action });
    }
    const mod = modOf(c);
    const until = typeof m.until === 'number' ? m.until : Infinity;
    if (m.action === 'mute' && m.user) { mod.muted.set(m.user, until); if (me) mod.mutedUntil = until; }
    if (m.action === 'unmute' && m.user) { mod.muted.delete(m.user); if (me) mod.mutedUntil = null; }
    if (m.action === 'topic') mod.topic = typeof m.topic === 'string' ? m.topic : '';
    if (m.action === 'slow') mod.slow = typeof m.seconds === 'number' ? m.seconds : 0;
    if (m.action === 'role' && m.user) {
      mod.owners = mod.owners.filter((n) => n !== m.user);
      mod.moderators = mod.moderators.filter((n) => n !== m.user);
      if (m.role === 'owner') mod.owners.push(m.user);
      if (m.role === 'moderator') mod.moderators.push(m.user);
      if (me) mod.role = m.role === 'owner' || m.role === 'moderator' ? m.role : 'member';
    }
    if (me && (m.action === 'kick' || m.action === 'ban')) {
      // Out of the room: the server has taken us out of it already.
      const why = m.reason ? ` (${m.reason})` : '';
      notice(m.action === 'kick'
        ? `${m.by} removed you from #${m.room}${why}. You may join it again.`
        : `You are banned from #${m.room}${typeof m.until === 'number' ? ` until ${when(m.until)}` : ''}${why}.`);
      A.dropRoom(m.room);
      return;
    }
    if (c.key === S.current) renderMessages();
    renderAll();
    renderRoomDialog();
  }

  /** `audit`: a page of the room's log, newest first. */
  function onAudit(m) {
    if (m.room !== audit.room || !Array.isArray(m.entries)) return;
    if (!audit.loading) return;
    audit.loading = false;
    for (const e of m.entries) if (e && typeof e.id === 'number' && !audit.entries.some((x) => x.id === e.id)) audit.entries.push(e);
    audit.entries.sort((a, b) => b.id - a.id);
    audit.more = !!m.more;
    renderAudit();
  }

  /** `blocks`: everyone the reader has blocked. */
  function onBlocks(m) {
    if (!Array.isArray(m.users)) return;
    S.blocked = new Set(m.users.filter((u) => typeof u === 'string'));
    renderAll();
  }

  /** An `error` about moderation; true when it was one (and said so). */
  function onError(m) {
    const c = current();
    if (m.code === 'slow_mode') {
      const s = Number((/(\d+)\s*s/.exec(m.message || '') || [])[1]) || (typeof m.seconds === 'number' ? m.seconds : 0);
      const room = typeof m.room === 'string' ? roomConv(m.room) : c && c.kind === 'room' ? c : null;
      if (room && s) modOf(room).slowUntil = Date.now() + s * 1000;
      A.setComposerEnabled();
      return true;
    }
    if (m.code === 'muted') {
      const room = typeof m.room === 'string' ? roomConv(m.room) : c && c.kind === 'room' ? c : null;
      const until = Number((/until (\d{10,})/.exec(m.message || '') || [])[1]) || null;
      if (room) modOf(room).mutedUntil = until || modOf(room).mutedUntil || Infinity;
      A.setComposerEnabled();
      return true;
    }
    if (m.code === 'banned') {
      const room = typeof m.room === 'string' ? m.room : null;
      notice(room ? `You are banned from #${room}.` : `You are banned: ${m.message || 'the server refused'}`);
      if (room) A.dropRoom(room);
      return true;
    }
    if (m.code === 'forbidden') { toast(`Not allowed: ${m.message || 'your role does not allow that'}`); return true; }
    if (m.code === 'blocked') { toast(m.message || 'This user does not accept your messages.'); return true; }
    return false;
  }

  // --- the member menu

  /** The menu's items for `nick` as seen from conversation `c`. */
  function items(c, nick) {
    const out = [['Send a message', () => A.show('@' + nick), 'dm']];
    if (S.blocked) {
      out.push(S.blocked.has(nick)
        ? ['Unblock', () => send({ type: 'unblock', user: nick }), 'unblock']
        : ['Block: hide their messages from me', () => send({ type: 'block', user: nick }), 'block']);
    }
    if (!c || c.kind !== 'room') return out;
    const mine = modOf(c).role;
    const theirs = roleIn(c, nick);
    if (rank(mine) <= rank(theirs)) return out; // only over those below
    if (may(c, 'kick')) out.push([`Remove from #${c.name}…`, () => openAction('kick', nick, c.name), 'kick']);
    if (may(c, 'mute')) {
      out.push(modOf(c).muted.has(nick)
        ? ['Unmute', () => send({ type: 'unmute', room: c.name, user: nick }), 'unmute']
        : ['Mute…', () => openAction('mute', nick, c.name), 'mute']);
    }
    if (may(c, 'ban')) out.push(['Ban…', () => openAction('ban', nick, c.name), 'ban']);
    if (!isGuest(c, nick)) {
      // Roles are held by accounts only.
      if (may(c, 'moderator') && theirs === 'member') out.push(['Make moderator', () => setRole(c, nick, 'moderator'), 'make-moderator']);
      if (may(c, 'moderator') && theirs === 'moderator') out.push(['Remove as moderator', () => setRole(c, nick, 'member'), 'remove-moderator']);
      if (may(c, 'owner') && theirs !== 'owner') out.push(['Make owner', () => setRole(c, nick, 'owner'), 'make-owner']);
      if (may(c, 'owner') && theirs === 'owner') out.push(['Remove as owner', () => setRole(c, nick, 'member'), 'remove-owner']);
    }
    return out;
  }

  const setRole = (c, user, role) => send({ type: 'role', room: c.name, user, role });

  /** Opens the menu of `nick` (from `opener`, a button), about room `room`
   * (or the conversation in view). */
  function openMenu(nick, opener, room) {
    if (!NICK_RE.test(nick) || nick === S.me) return;
    const c = room ? roomConv(room) : current();
    const box = $('member-menu');
    menu.open = true;
    Object.assign(menu, { nick, room: c && c.kind === 'room' ? c.name : null, opener });
    const list = items(c, nick).map(([text, act, key]) => {
      const b = el('button', { type: 'button', role: 'menuitem', class: 'menu-item', 'data-testid': `menu-${key}`, tabIndex: -1, text });
      b.onclick = () => { closeMenu(key === 'dm'); act(); };
      return b;
    });
    const c2 = c && c.kind === 'room' ? c : null;
    const role = c2 ? roleIn(c2, nick) : 'member';
    const tags = [rank(role) > 0 ? role : '', c2 && isGuest(c2, nick) ? 'guest' : ''].filter(Boolean).join(', ');
    $('member-menu-title').textContent = tags ? `${nick} (${tags})` : nick;
    $('member-menu-items').replaceChildren(...list);
    box.hidden = false;
    opener.setAttribute('aria-expanded', 'true');
    // Beside the nick, inside the window.
    const r = opener.getBoundingClientRect();
    const w = box.offsetWidth; const h = box.offsetHeight;
    box.style.left = `${Math.max(4, Math.min(r.left, innerWidth - w - 4))}px`;
    box.style.top = `${r.bottom + h + 4 > innerHeight ? Math.max(4, r.top - h - 4) : r.bottom + 4}px`;
    list[0]?.focus();
  }

  function closeMenu(keepFocusAway = false) {
    if (!menu.open) return;
    menu.open = false;
    $('member-menu').hidden = true;
    // The member list may have been drawn again meanwhile: its new button.
    const o = menu.opener && menu.opener.isConnected ? menu.opener
      : document.querySelector(`[data-testid="user-${menu.nick}"] button`);
    if (o) { o.setAttribute('aria-expanded', 'false'); if (!keepFocusAway) o.focus(); }
  }

  $('member-menu').addEventListener('keydown', (e) => {
    const all = [...$('member-menu-items').children];
    const at = all.indexOf(document.activeElement);
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      all[(at + (e.key === 'ArrowDown' ? 1 : all.length - 1)) % all.length]?.focus();
    } else if (e.key === 'Home' || e.key === 'End') {
      e.preventDefault();
      all[e.key === 'Home' ? 0 : all.length - 1]?.focus();
    } else if (e.key === 'Escape') {
      e.preventDefault();
      closeMenu();
    } else if (e.key === 'Tab') {
      closeMenu();
    }
  });
  document.addEventListener('click', (e) => {
    if (menu.open && !e.target.closest('#member-menu') && e.target !== menu.opener && !menu.opener?.contains(e.target)) closeMenu(true);
  });

  // --- kick, mute, ban: a dialog for the reason and how long

  function openAction(action, nick, room) {
    Object.assign(dialog, { action, nick, room });
    const c = roomConv(room);
    const verb = action === 'kick' ? 'Remove' : action === 'mute' ? 'Mute' : 'Ban';
    $('mod-title').textContent = action === 'kick' ? `Remove ${nick} from #${room}` : `${verb} ${nick} in #${room}`;
    $('mod-explain').textContent = action === 'kick' ? `${nick} leaves the room now, and may join it again.`
      : action === 'mute' ? `${nick} can read #${room} but cannot post.`
        : `${nick} leaves the room and cannot join it again while banned.`;
    const durations = action === 'mute' ? MUTE_FOR : action === 'ban' ? BAN_FOR : [];
    $('mod-duration-row').hidden = !durations.length;
    $('mod-duration').replaceChildren(...durations.map(([v, label]) => el('option', { value: v === null ? '' : String(v), text: label })));
    $('mod-scope-row').hidden = !(action === 'ban' && c && may(c, 'server_ban'));
    $('mod-scope').value = 'room';
    $('mod-reason').value = '';
    $('mod-confirm').textContent = verb;
    $('mod-dialog').showModal();
    $('mod-duration-row').hidden ? $('mod-reason').focus() : $('mod-duration').focus();
  }

  $('mod-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const { action, nick, room } = dialog;
    const frame = { type: action, user: nick, room };
    const reason = $('mod-reason').value.trim();
    if (reason) frame.reason = reason;
    const minutes = $('mod-duration').value;
    if (action !== 'kick' && minutes) frame.minutes = Number(minutes);
    if (action === 'ban' && !$('mod-scope-row').hidden && $('mod-scope').value === 'server') delete frame.room;
    if (!send(frame)) toast('not connected: try again when back online');
    $('mod-dialog').close();
  });
  $('mod-cancel').addEventListener('click', () => $('mod-dialog').close());

  // --- the room's settings: topic, slow mode, audit log

  const settingsRoom = () => { const c = current(); return c && c.kind === 'room' ? c : null; };

  /** The header: the topic, and the settings button for those who may use it. */
  function renderHeader() {
    const c = current();
    const mod = c && c.kind === 'room' ? modOf(c) : null;
    $('topic').textContent = mod ? mod.topic : '';
    $('topic').hidden = !(mod && mod.topic);
    $('room-settings').hidden = !(c && (may(c, 'topic') || may(c, 'slow') || may(c, 'audit')));
  }

  function renderRoomDialog() {
    const dlg = $('room-dialog');
    if (!dlg.open) return;
    const c = conv('#' + audit.room);
    const mod = modOf(c);
    $('room-dialog-title').textContent = `#${c.name}: settings`;
    $('topic-row').hidden = !may(c, 'topic');
    $('slow-row').hidden = !may(c, 'slow');
    $('audit-section').hidden = !may(c, 'audit');
    if (document.activeElement !== $('topic-input')) $('topic-input').value = mod.topic;
    if (document.activeElement !== $('slow-select')) $('slow-select').value = String(SLOW.some(([s]) => s === mod.slow) ? mod.slow : 0);
  }

  function renderAudit() {
    const list = $('audit-list');
    const c = roomConv(audit.room);
    list.replaceChildren(...audit.entries.map((e) => {
      const li = el('li', { 'data-testid': 'audit-entry', 'data-action': e.action, 'data-user': e.user || '' },
        el('time', { dateTime: new Date(e.ts).toISOString(), text: when(e.ts) }), ' ', el('span', { text: auditLine(e) }));
      // A banned user is in no member list: the ban is lifted from here.
      if (e.action === 'ban' && e.user && c && may(c, 'ban')) {
        const lift = el('button', { type: 'button', class: 'link', 'data-testid': 'audit-unban', text: `lift the ban on ${e.user}` });
        lift.onclick = () => { if (!send({ type: 'unban', room: audit.room, user: e.user })) toast('not connected: try again when back online'); };
        li.append(' ', lift);
      }
      return li;
    }));
    $('audit-empty').hidden = audit.entries.length > 0 || audit.loading;
    $('audit-more').hidden = !audit.more;
    $('audit-more').disabled = audit.loading;
  }

  function loadAudit(before) {
    const frame = { type: 'audit', room: audit.room, limit: AUDIT_PAGE };
    if (before) frame.before = before;
    if (send(frame)) audit.loading = true;
    renderAudit();
  }

  $('room-settings').addEventListener('click', () => {
    const c = settingsRoom();
    if (!c) return;
    Object.assign(audit, { room: c.name, entries: [], more: false, loading: false });
    $('slow-select').replaceChildren(...SLOW.map(([s, label]) => el('option', { value: String(s), text: label })));
    $('room-dialog').showModal();
    renderRoomDialog();
    if (may(c, 'audit')) loadAudit(null); else renderAudit();
  });
  $('room-close').addEventListener('click', () => $('room-dialog').close());
  $('audit-more').addEventListener('click', () => {
    const oldest = audit.entries[audit.entries.length - 1];
    if (oldest && !audit.loading) loadAudit(oldest.id);
  });
  $('topic-form').addEventListener('submit', (e) => {
    e.preventDefault();
    if (!send({ type: 'topic', room: audit.room, topic: $('topic-input').value.trim() })) toast('not connected: try again when back online');
  });
  $('slow-form').addEventListener('submit', (e) => {
    e.preventDefault();
    if (!send({ type: 'slow', room: audit.room, seconds: Number($('slow-select').value) })) toast('not connected: try again when back online');
  });
  // New entries while the log is open: read the newest page again.
  const refreshAudit = () => {
    if ($('room-dialog').open && !$('audit-section').hidden && !audit.loading) { audit.entries = []; loadAudit(null); }
  };

  return {
    onRoom, onModeration: (m) => { onModeration(m); if (m.room === audit.room) refreshAudit(); }, onAudit, onBlocks, onError,
    openMenu, closeMenu, postState, renderState, renderHeader, may, roleIn, isGuest,
    /** Whether the reader may delete others' messages in `c`. */
    mayDelete: (c) => may(c, 'delete'),
  };
}
