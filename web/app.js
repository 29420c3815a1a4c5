// The chat client: docs/PROTOCOL.md, spoken with the browser's WebSocket.
// This module holds the state and the user's actions; events.js applies
// the server's events, conn.js keeps the socket, render.js the message
// list, sidebar.js the side panel, notices.js toasts and notifications,
// markdown.js the text's formatting, signin.js who the user is (a nick,
// an account through account.js, a token) and the closes about it,
// moderation.js roles, the member menu and the room's settings. All user text reaches the page
// through textContent, never as HTML.
import { $, saved, save, NICK_RE, ROOM_RE } from './util.js';
import { Conn } from './conn.js';
import { renderList } from './render.js';
import { renderSide } from './sidebar.js';
import { mentions as mentionsMe } from './markdown.js';
import { eventHandler } from './events.js';
import { composer } from './compose.js';
import { announce, toast, notify as notifyUser, askNotifyOnce } from './notices.js';
import { MODE, ACCOUNTS } from './account.js';
import { moderation } from './moderation.js';
import { signin } from './signin.js';
import { wirePanel } from './wire.js';

// The search box asks the server once typing pauses this long.
const SEARCH_DELAY_MS = 200;
// How close to the bottom of the list counts as "at the bottom".
const NEAR_BOTTOM_PX = 60;

// Whether the server wants a token from elsewhere (`--jwt-secret`), has
// accounts of its own, or lets anyone pick a nick: it says so in the page
// it serves (docs/PROTOCOL.md, "Authentication"; account.js).
const AUTH = MODE;
// A login URL (`/?token=JWT`) hands the page its token once: it is kept,
// and taken out of the address bar (and so out of history and bookmarks).
{
  const params = new URLSearchParams(location.search);
  if (params.has('token')) {
    save('chat.token', params.get('token'));
    params.delete('token');
    const q = params.toString();
    history.replaceState(null, '', location.pathname + (q ? '?' + q : '') + location.hash);
  }
}

const S = {
  nick: saved('chat.nick', null), // the nick asked for
  token: saved('chat.token', null),
  me: null,                       // the nick in use (welcome.user)
  // Shared by the tabs of this browser: a second tab with it is the same
  // user (one nick, several connections), not alice-2.
  session: saved('chat.session', null),
  rooms: saved('chat.rooms', ['general']).filter((r) => ROOM_RE.test(r)),
  drafts: saved('chat.drafts', {}), // conversation key -> unsent text
  convs: new Map(),   // '#room' or '@nick' -> conversation
  current: null,      // key of the conversation in view
  lastRoom: null,     // room whose roster the online list shows
  ready: false,       // welcome received on this connection
  welcomed: false,    // welcome ever received on this page: reconnects resume
  outbox: [],         // frames written while not connected
  inflight: new Map(), // client_id of a post -> conversation key
  requests: new Map(), // client_id of an edit, delete or react -> conversation key
  mentionWait: new Map(), // 'key id' -> a mention whose message has not come yet
  lastTypingSent: 0,
  found: null,        // the search in the online list: {room, q, list, next, loading}
  searchTimer: null,
  picker: null,       // id of the message whose reaction picker is open
  confirmDelete: null, // id of the message whose delete awaits a second click
  guest: false,       // welcome.guest: a guest of a server with accounts
  blocked: null,      // the nicks the user blocked (a Set, once `blocks` came)
  conv,
};
const hasToken = () => typeof S.token === 'string' && S.token.length > 0;

// --- conversations -----------------------------------------------------------

function conv(key) {
  let c = S.convs.get(key);
  if (!c) {
    c = {
      key, kind: key[0] === '#' ? 'room' : 'dm', name: key.slice(1),
      msgs: new Map(), pending: new Map(), lastSeen: 0, lastId: 0, more: false, joined: false, loaded: false,
      unread: 0, mentions: 0, typing: new Map(), receipts: new Map(), readSent: 0,
      dividerAt: null, compose: null, // {mode: 'edit' | 'reply', id}
      // The members loaded so far: the first pages, in the server's
      // order, up to the cursor `next` (null: all of them); and the
      // room's count. Never the whole of a big room at once.
      members: new Set(), next: null, count: 0, loadingMembers: false, expectFull: true,
    };
    S.convs.set(key, c);
  }
  return c;
}

/** The conversation an event is about: `room`, or the DM's other end. */
function convOf(m) {
  if (typeof m.room === 'string') return S.rooms.includes(m.room) ? conv('#' + m.room) : null;
  const peer = typeof m.dm === 'string' ? m.dm : typeof m.with === 'string' ? m.with
    : m.from === S.me ? m.to : m.from;
  return typeof peer === 'string' && NICK_RE.test(peer) ? conv('@' + peer) : null;
}

/** Where a request about conversation `c` is addressed. */
const target = (c) => (c.kind === 'room' ? { room: c.name } : { dm: c.name });

const current = () => (S.current && S.convs.get(S.current)) || null;

function addMessage(c, m, live) {
  if (c.kind === 'room' && m.id > c.lastSeen) c.lastSeen = m.id;
  if (m.id > c.lastId) c.lastId = m.id;
  if (c.msgs.has(m.id)) return false;
  c.msgs.set(m.id, {
    id: m.id, from: m.from, text: m.text ?? '', ts: m.ts, edited_ts: m.edited_ts, deleted: !!m.deleted,
    reactions: m.reactions && typeof m.reactions === 'object' ? m.reactions : undefined,
    reply_to: m.reply_to, mentioned: m.from !== S.me && mentionsMe(m.text ?? '', S.me),
    guest: m.guest === true,
  });
  if (m.from === S.me) {
    // Our own message may come before its ack: it replaces the oldest
    // pending one with the same text.
    for (const [cid, p] of c.pending) {
      if (p.text === m.text) { c.pending.delete(cid); S.inflight.delete(cid); break; }
    }
  } else if (live) {
    const looking = c.key === S.current && !document.hidden;
    if (!looking) {
      if (!c.unread) c.dividerAt = null;
      c.unread += 1;
    }
    if (c.key === S.current) {
      if (!atBottom()) c.below = (c.below || 0) + 1; // counted on "jump to latest"
      if (!looking && c.dividerAt === null) c.dividerAt = m.id;
      announce(`${m.from}: ${m.deleted ? 'message deleted' : m.text}`);
    }
  }
  c.typing.delete(m.from);
  return true;
}

function show(key) {
  const old = current();
  if (old) saveDraft(old);
  S.current = key;
  save('chat.current', key, sessionStorage);
  S.picker = S.confirmDelete = null;
  const c = key && conv(key);
  if (c) {
    // The divider goes before the first message not yet read.
    c.dividerAt = null;
    if (c.unread) {
      const ids = [...c.msgs.keys()].sort((a, b) => a - b);
      const first = ids[ids.length - c.unread];
      if (first !== undefined) c.dividerAt = first;
    }
    c.unread = 0;
    c.mentions = 0;
    if (c.kind === 'room' && S.lastRoom !== c.name) {
      S.lastRoom = c.name;
      if (S.found) search(S.found.q);
    }
    if (c.kind === 'dm' && !c.loaded && S.ready) {
      send({ type: 'history', dm: c.name });
    }
    $('composer').value = S.drafts[key] || '';
    renderCompose();
  }
  document.body.classList.remove('side-open');
  $('menu').setAttribute('aria-expanded', 'false');
  renderAll(true);
  markRead();
}

function saveDraft(c) {
  if (c.compose && c.compose.mode === 'edit') return; // the composer holds the message being edited
  const text = $('composer').value;
  if (text) S.drafts[c.key] = text; else delete S.drafts[c.key];
  save('chat.drafts', S.drafts);
}

function joinRoom(room) {
  if (!S.rooms.includes(room)) {
    S.rooms.push(room);
    save('chat.rooms', S.rooms);
    conv('#' + room).expectFull = true;
    if (S.ready) send({ type: 'join', room });
  }
  show('#' + room);
}

function leaveRoom(room) {
  S.rooms = S.rooms.filter((r) => r !== room);
  save('chat.rooms', S.rooms);
  S.convs.delete('#' + room);
  if (S.ready) send({ type: 'leave', room });
  if (S.lastRoom === room) S.lastRoom = S.rooms[0] || null;
  if (S.current === '#' + room) show(S.rooms.length ? '#' + S.rooms[0] : null);
  else renderAll();
}

/** Tells the server what the reader has seen of the conversation in view
 * (when it is in view: the page visible and the list at its bottom). */
function markRead() {
  const c = current();
  if (!c || !S.ready || document.hidden || !atBottom()) return;
  let newest = 0;
  for (const [id, m] of c.msgs) if (id > newest && m.from !== S.me) newest = id;
  if (!newest) for (const id of c.msgs.keys()) newest = Math.max(newest, id);
  if (newest > c.readSent) {
    c.readSent = newest;
    send({ type: 'read', ...target(c), id: newest });
  }
}

// --- the connection ------------------------------------------------------------

const conn = new Conn({
  url: () => `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`,
  onOpen: (ws) => {
    // The tabs share the secret: another may have changed it (a rename).
    S.session = saved('chat.session', S.session);
    // Another tab may have refreshed the token.
    if (hasToken()) S.token = saved('chat.token', S.token);
    const hello = { type: 'hello' };
    if (AUTH === 'token' || hasToken()) hello.token = S.token; else hello.nick = S.me || S.nick;
    if (S.session) hello.session = S.session;
    if (S.welcomed) {
      // Same page: ask for exactly what was missed in every room.
      hello.resume = {};
      // Rooms joined while offline are joined afresh after the welcome.
      for (const r of S.rooms) if (conv('#' + r).joined) hello.resume[r] = conv('#' + r).lastSeen;
    }
    ws.send(hello);
  },
  onFrame: (m) => handle(m),
  onLost: (code, reason) => {
    S.ready = false;
    // Sent but never acknowledged: we cannot know whether it was stored.
    for (const c of S.convs.values()) {
      for (const p of c.pending.values()) if (p.state === 'pending' && p.sent) p.state = 'failed';
    }
    renderMessages();
    return SI.closed(code, reason);
  },
  onState: (state, retryAt) => {
    if (state === 'open') setStatus('online');
    else if (state === 'stopped') setStatus('offline');
    else setStatus(state === 'connecting' && !S.welcomed ? 'connecting' : 'reconnecting');
    renderOffline(state, retryAt);
  },
});

function send(frame) { return conn.send(frame); }

function setStatus(state, text = state) {
  const s = $('status');
  s.dataset.state = state;
  s.textContent = text;
}

/** The banner while the server cannot be reached, with "retry now". */
function renderOffline(state, retryAt) {
  clearInterval(renderOffline.tick);
  const banner = $('offline');
  const down = (state === 'reconnecting' || (state === 'connecting' && conn.attempt > 0));
  banner.hidden = !down;
  if (!down) return;
  const line = () => {
    const s = Math.ceil((retryAt - Date.now()) / 1000);
    $('offline-text').textContent = state === 'reconnecting' && retryAt && s > 0
      ? `You are offline: the server cannot be reached. Trying again in ${s} s.`
      : 'You are offline: the server cannot be reached. Reconnecting…';
  };
  line();
  if (retryAt) renderOffline.tick = setInterval(line, 1000);
}

/** Out of a room the server took us from (kicked, banned). */
function dropRoom(room) {
  S.rooms = S.rooms.filter((r) => r !== room);
  save('chat.rooms', S.rooms);
  S.convs.delete('#' + room);
  if (S.lastRoom === room) S.lastRoom = S.rooms[0] || null;
  if (S.current === '#' + room) show(S.rooms.length ? '#' + S.rooms[0] : null);
  else renderAll();
}

function notice(text) {
  const n = $('notice');
  n.textContent = text || '';
  n.hidden = !text;
}

/** What events.js works on: the state and the functions that render it. */
function app() {
  return {
    S, addMessage, conn, conv, convOf, current, jumpTo, loadMembers, markRead, notice, renderAll, renderLists,
    renderMessages, renderTyping, search, send, setComposerEnabled, show, toast, dropRoom,
    nickRefused: (m) => SI.nickRefused(m),
    notify: (c, m) => notifyUser(c, m, show),
    saveNick: (nick) => save('chat.nick', nick),
    saveSession: (session) => save('chat.session', session),
  };
}
const M = moderation({ S, conv, current, send, notice, toast, show, dropRoom, setComposerEnabled, renderAll, renderMessages });
const C = composer({
  S, current, send, target, saveDraft, renderMessages, renderJump, markRead, renderLists, toast, askNotifyOnce,
  member: (nick, opener, room) => M.openMenu(nick, opener, room),
  postState: (c) => M.postState(c),
});
const jumpTo = (c, id) => C.jumpTo(c, id);
const renderCompose = () => C.renderCompose();
const W = wirePanel({ send });
const handle = eventHandler({ ...app(), M, W });
const SI = signin({ S, conn, notice, toast, send, setStatus, setComposerEnabled, hasToken, start });
const acct = SI.acct;


// --- rendering -------------------------------------------------------------

const atBottom = () => {
  const box = $('scroll');
  return box.scrollHeight - box.scrollTop - box.clientHeight < NEAR_BOTTOM_PX;
};

function renderMessages(keepScroll = false) {
  const box = $('scroll');
  const c = current();
  const fromBottom = box.scrollHeight - box.scrollTop;
  const wasAtBottom = atBottom();
  renderList($('messages'), c, {
    me: S.me || S.nick, picker: S.picker, confirmDelete: S.confirmDelete, blocked: S.blocked,
    moderate: !!c && M.mayDelete(c),
  });
  $('earlier').hidden = !(c && c.more && c.msgs.size);
  $('earlier').disabled = !!(c && c.loadingEarlier);
  const empty = $('empty');
  empty.hidden = !!(c && (c.msgs.size || c.pending.size));
  empty.textContent = !c ? 'Join a room to start chatting.' : c.kind === 'dm' ? `Say hi to ${c.name}.` : 'No messages yet.';
  if (keepScroll) box.scrollTop = box.scrollHeight - fromBottom;
  else if (wasAtBottom || renderMessages.force) box.scrollTop = box.scrollHeight;
  renderMessages.force = false;
  renderJump();
}

/** "Jump to latest" while the list is scrolled up, with how many new
 * messages came in below since. */
function renderJump() {
  const c = current();
  const bottom = atBottom();
  if (c && bottom) c.below = 0;
  const jump = $('jump');
  jump.hidden = !c || bottom;
  const n = (c && c.below) || 0;
  jump.textContent = n ? `↓ ${n} new message${n === 1 ? '' : 's'}` : '↓ Jump to latest';
}

function renderLists() {
  renderSide(S, { show, leave: leaveRoom, member: (nick, opener) => M.openMenu(nick, opener, S.lastRoom), roleIn: M.roleIn });
  M.renderHeader();
  $('guest-banner').hidden = !(S.guest && S.welcomed && AUTH === 'open');
  // With tokens the nick is the token's (a rename would be `nick_fixed`).
  $('rename-form').hidden = AUTH === 'token' || hasToken();
  $('change-password').hidden = !(ACCOUNTS && !S.guest && S.welcomed && acct.signedIn());
  $('logout').textContent = ACCOUNTS && acct.signedIn() ? 'Log out' : 'Log out everywhere';
  const c = current();
  const name = c ? (c.kind === 'room' ? '#' : '@') + c.name : '';
  if (S.me) $('composer').placeholder = c ? `Message ${name}` : 'Join a room first';
  setComposerEnabled();
}

/** The composer works only with a conversation and a user; otherwise it
 * says why it is disabled. */
function setComposerEnabled() {
  const c = current();
  const signedIn = S.welcomed || ((AUTH === 'nick' || AUTH === 'open') && !hasToken() && typeof S.nick === 'string');
  // Muted here: the composer is closed, and says until when.
  const st = c && signedIn ? M.renderState() : (M.renderState(), null);
  const ok = !!c && signedIn && !(st && st.closed);
  $('composer').disabled = $('send').disabled = !ok;
  if (st && st.closed) $('composer').placeholder = st.text;
  if (!signedIn) {
    $('composer').placeholder = AUTH === 'token' ? 'Sign in with a token to chat'
      : ACCOUNTS && (AUTH === 'required' || hasToken()) ? 'Log in to chat' : 'Choose a nick to chat';
  }
}

function renderTyping() {
  const c = current();
  const now = Date.now();
  const who = [];
  if (c) for (const [u, until] of c.typing) { if (until > now) who.push(u); else c.typing.delete(u); }
  $('typing').textContent = who.length === 0 ? ''
    : who.length === 1 ? `${who[0]} is typing…`
    : who.length === 2 ? `${who[0]} and ${who[1]} are typing…`
    : 'several people are typing…';
}

function renderAll(force = false) {
  renderLists();
  renderMessages.force = force;
  renderMessages();
  renderTyping();
}

// --- the side panel ------------------------------------------------------------

/** Asks for the page of `c`'s members after `after` (null: the first). */
function loadMembers(c, after) {
  const frame = { type: 'members', room: c.name };
  if (after) frame.after = after;
  if (send(frame)) c.loadingMembers = true;
}

/** Searches the online list's room for nicks beginning with `q` ('' ends the search). */
function search(q) {
  const room = S.lastRoom;
  if (!q || !room) { S.found = null; renderLists(); return; }
  S.found = { room, q, list: [], next: null, loading: true };
  if (!NICK_RE.test(q)) S.found.loading = false; // no nick begins so
  else send({ type: 'members', room, q });
  renderLists();
}

$('member-search').addEventListener('input', () => {
  clearTimeout(S.searchTimer);
  S.searchTimer = setTimeout(() => search($('member-search').value.trim()), SEARCH_DELAY_MS);
});

$('members-more').addEventListener('click', () => {
  const c = S.lastRoom && S.convs.get('#' + S.lastRoom);
  if (!c) return;
  const f = S.found && S.found.room === c.name ? S.found : null;
  if (f && f.next !== null && !f.loading) {
    if (send({ type: 'members', room: c.name, q: f.q, after: f.next })) f.loading = true;
  } else if (!f && c.next !== null && !c.loadingMembers) {
    loadMembers(c, c.next);
  }
  renderLists();
});

$('join-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = $('join-input');
  const room = input.value.trim().replace(/^#/, '').toLowerCase();
  if (!ROOM_RE.test(room)) return toast('room names: 1–32 of a–z, 0–9, _ and -');
  if (!S.rooms.includes(room) && S.rooms.length >= 20) return toast('at most 20 rooms');
  input.value = '';
  joinRoom(room);
});

$('menu').addEventListener('click', () => {
  const open = document.body.classList.toggle('side-open');
  $('menu').setAttribute('aria-expanded', String(open));
});

document.querySelector('.chat').addEventListener('click', () => {
  if (document.body.classList.contains('side-open')) $('menu').click();
});

$('retry-now').addEventListener('click', () => conn.retryNow());

function start() {
  renderAll(true);
  if (!ACCOUNTS || !hasToken()) { conn.connect(); return; }
  // An account's token, refreshed first if it is (about to be) stale.
  acct.fresh().then((ok) => {
    S.token = saved('chat.token', null);
    if (ok && hasToken()) conn.connect();
  });
}

{
  // The conversation in view before a reload, if it is still one of ours.
  const was = saved('chat.current', null, sessionStorage);
  S.current = typeof was === 'string' && ((was[0] === '#' && S.rooms.includes(was.slice(1))) || (was[0] === '@' && NICK_RE.test(was.slice(1))))
    ? was : S.rooms.length ? '#' + S.rooms[0] : null;
  if (S.current) conv(S.current);
}
S.lastRoom = S.rooms[0] || null;
$('composer').value = (S.current && S.drafts[S.current]) || '';
if (hasToken() || ((AUTH === 'nick' || AUTH === 'open') && typeof S.nick === 'string' && NICK_RE.test(S.nick))) {
  start();
} else {
  setStatus('offline');
  renderAll();
  if (AUTH === 'token') SI.askToken('');
  else if (AUTH === 'required') acct.show('login', 'Log in or sign up to chat.');
  else SI.askNick('');
}
