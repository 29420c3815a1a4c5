// What the server says (docs/PROTOCOL.md, "Server → client"), applied to
// the page's state: one case per event type. `A` holds the app's state
// and the functions that render it (see `app()` in app.js).
import { $, byNick, NICK_RE } from './util.js';
import { mentions as mentionsMe } from './markdown.js';
import { MODE } from './account.js';
import { refusal } from './moderation.js';

export const TYPING_SHOW_MS = 3000;
// How often a big room's member list is paged afresh while in view.
const REPAGE_MS = 5000;

/** The handler of the server's events, over the app `A`. */
export function eventHandler(A) {
  const { S, M, W, addMessage, conn, conv, convOf, current, jumpTo, loadMembers, markRead, notice, notify, renderAll, renderLists, renderMessages, renderTyping, search, send, setComposerEnabled, show, toast } = A;
  function handle(m) {
    switch (m.type) {
      case 'welcome': {
        S.me = m.user;
        S.guest = m.guest === true;
        S.session = m.session;
        A.saveSession(m.session);
        S.ready = true;
        conn.welcomed();
        const resumed = S.welcomed;
        S.welcomed = true;
        W.onWelcome();
        notice('');
        const given = Array.isArray(m.rooms) ? m.rooms : [];
        for (const r of given) {
          if (!S.rooms.includes(r)) { send({ type: 'leave', room: r }); continue; }
          const c = conv('#' + r);
          c.expectFull = true;
          c.typing.clear();
        }
        for (const r of S.rooms) {
          if (given.includes(r)) continue;
          conv('#' + r).expectFull = true;
          send({ type: 'join', room: r });
        }
        // Unread and mentions as the server counts them (read marks live
        // there, so they survive reloads and follow the user): keyed by
        // room, or `@nick` for a DM.
        for (const field of ['unread', 'mentions']) {
          if (!m[field] || typeof m[field] !== 'object') continue;
          for (const [k, n] of Object.entries(m[field])) {
            if (typeof n !== 'number') continue;
            const key = k[0] === '@' ? k : '#' + k;
            if (key[0] === '#' && !S.rooms.includes(k)) continue;
            if (key[0] === '@' && !NICK_RE.test(k.slice(1))) continue;
            // A resume replays what a room missed, counted as it comes;
            // DMs are not replayed: their count is the server's.
            if (resumed && key[0] === '#') continue;
            const c = conv(key);
            if (c.key === S.current) {
              // In view: the divider marks where the unread begin.
              if (field === 'unread' && !resumed) c.unreadOnOpen = n;
              c[field] = 0;
            } else c[field] = n;
          }
        }
        send({ type: 'dms' });
        // Blocking is there wherever users can be told apart.
        if (MODE !== 'nick') send({ type: 'blocks' });
        // DMs that came while we were away: read their newest page again.
        if (resumed) for (const c of S.convs.values()) if (c.kind === 'dm' && c.loaded) send({ type: 'history', dm: c.name });
        for (const f of S.outbox.splice(0)) {
          send(f);
          const c = S.convs.get(S.inflight.get(f.client_id));
          const p = c && c.pending.get(f.client_id);
          if (p) p.sent = true;
        }
        setComposerEnabled();
        if (!resumed) {
          show(S.current || (S.rooms.length ? '#' + S.rooms[0] : null));
          if ($('nick-dialog').hidden && $('token-dialog').hidden) $('composer').focus();
        } else renderAll();
        break;
      }
      case 'msg': case 'dm': {
        if (m.type === 'msg' && !S.rooms.includes(m.room)) return;
        const c = convOf(m);
        if (!c) return;
        const added = addMessage(c, m, true);
        // Every DM mentions its recipient: counted so, and notified
        // while the page is hidden.
        if (added && m.type === 'dm' && m.from !== S.me && (c.key !== S.current || document.hidden)) {
          c.mentions += 1;
          notify(c, m);
        }
        const waiting = S.mentionWait.get(`${c.key} ${m.id}`);
        if (waiting) { S.mentionWait.delete(`${c.key} ${m.id}`); notify(c, waiting); }
        if (c.key === S.current) { renderMessages(); markRead(); }
        renderLists();
        renderTyping();
        break;
      }
      case 'history': {
        if (!Array.isArray(m.messages)) return;
        if (typeof m.room === 'string' && !S.rooms.includes(m.room)) return;
        const c = convOf(m);
        if (!c) return;
        c.joined = true;
        c.loaded = true;
        for (const msg of m.messages) addMessage(c, msg, false);
        const oldest = c.msgs.size ? Math.min(...c.msgs.keys()) : 0;
        if (m.messages.length === 0 || m.messages[0].id === oldest) c.more = !!m.more;
        c.loadingEarlier = false;
        if (c.unreadOnOpen) {
          // Unread after a reload: the divider goes before the first of them.
          const ids = [...c.msgs.keys()].sort((a, b) => a - b);
          c.dividerAt = ids[Math.max(0, ids.length - c.unreadOnOpen)] ?? null;
          c.unreadOnOpen = 0;
        }
        if (c.key === S.current) renderMessages(c.keepScroll);
        c.keepScroll = false;
        if (c.jumpTo) jumpTo(c, c.jumpTo);
        renderLists();
        markRead();
        break;
      }
      case 'gap': {
        // A long absence: the server replays only the newest messages,
        // from m.before on. What we hold from before the gap is no longer
        // contiguous with them, so it goes; "earlier" pages back from
        // the replay, through the messages we missed.
        if (!S.rooms.includes(m.room)) return;
        const c = conv('#' + m.room);
        for (const k of [...c.msgs.keys()]) if (k < m.before) c.msgs.delete(k);
        c.more = true;
        if (c.key === S.current) renderMessages(); else renderLists();
        break;
      }
      case 'ack': {
        S.requests.delete(m.client_id);
        const c = S.convs.get(S.inflight.get(m.client_id));
        S.inflight.delete(m.client_id);
        const p = c && c.pending.get(m.client_id);
        if (!p) return; // its msg came first and took its place
        c.pending.delete(m.client_id);
        if (!c.msgs.has(m.id)) {
          c.msgs.set(m.id, { id: m.id, from: S.me, text: p.text, ts: p.ts, reply_to: p.reply_to });
          if (m.id > c.lastId) c.lastId = m.id;
        }
        if (c.key === S.current) renderMessages();
        break;
      }
      case 'edited': {
        const c = convOf(m);
        seen(c, m);
        const msg = c && c.msgs.get(m.id);
        if (!msg) return;
        msg.text = m.text;
        msg.edited_ts = m.edited_ts || Date.now();
        msg.mentioned = msg.from !== S.me && mentionsMe(m.text, S.me);
        if (c.key === S.current) renderMessages();
        break;
      }
      case 'deleted': {
        const c = convOf(m);
        seen(c, m);
        const msg = c && c.msgs.get(m.id);
        if (!msg) return;
        msg.deleted = true;
        msg.text = '';
        msg.reactions = undefined;
        if (c.key === S.current) renderMessages();
        break;
      }
      case 'reaction': {
        const c = convOf(m);
        seen(c, m);
        const msg = c && c.msgs.get(m.id);
        if (!msg || typeof m.emoji !== 'string' || !Array.isArray(m.users)) return;
        msg.reactions = { ...(msg.reactions || {}) };
        if (m.users.length) msg.reactions[m.emoji] = m.users; else delete msg.reactions[m.emoji];
        if (c.key === S.current) renderMessages();
        break;
      }
      case 'receipt': {
        const c = convOf({ ...m, from: m.user, to: S.me });
        if (!c || typeof m.user !== 'string' || typeof m.id !== 'number') return;
        if (m.user === S.me) {
          // Read in another tab of ours: nothing is unread here either.
          if (c.key !== S.current || document.hidden) { c.unread = 0; c.mentions = 0; renderLists(); }
          c.readSent = Math.max(c.readSent, m.id);
          return;
        }
        c.receipts.set(m.user, Math.max(c.receipts.get(m.user) || 0, m.id));
        if (c.key === S.current) renderMessages();
        break;
      }
      case 'receipts': {
        // Who has read how far, after a join's history or a DM's first page.
        const c = convOf({ ...m, from: m.dm, to: S.me });
        if (!c || !Array.isArray(m.receipts)) return;
        for (const r of m.receipts) {
          if (r && typeof r.user === 'string' && typeof r.id === 'number' && r.user !== S.me) {
            c.receipts.set(r.user, Math.max(c.receipts.get(r.user) || 0, r.id));
          }
        }
        if (c.key === S.current) renderMessages();
        break;
      }
      case 'renamed': {
        // Our nick changed (here or in another tab): every message of
        // ours keeps its old name, new ones carry the new.
        if (typeof m.user !== 'string') return;
        S.me = m.user;
        S.nick = m.user;
        A.saveNick(m.user);
        if (typeof m.session === 'string') { S.session = m.session; A.saveSession(m.session); }
        renderAll();
        break;
      }
      case 'mention': {
        const c = convOf({ ...m, to: S.me });
        if (!c) return;
        // A DM's mention (after welcome, for DMs that came while away) is
        // already in welcome's counts.
        if (c.kind === 'dm') { if (c.key !== S.current) c.mentions = Math.max(c.mentions, 1); renderLists(); }
        else if (c.key !== S.current || document.hidden) { c.mentions += 1; renderLists(); }
        // The notification quotes the message: wait for it if the
        // mention came first.
        if (c.msgs.has(m.id) || c.kind === 'dm') notify(c, m);
        else S.mentionWait.set(`${c.key} ${m.id}`, m);
        break;
      }
      case 'dms': {
        if (!Array.isArray(m.conversations)) return;
        for (const d of m.conversations) {
          if (!d || typeof d.with !== 'string' || !NICK_RE.test(d.with)) continue;
          const c = conv('@' + d.with);
          if (typeof d.last_id === 'number') c.lastId = Math.max(c.lastId, d.last_id);
          if (typeof d.unread === 'number' && c.key !== S.current) c.unread = d.unread;
        }
        const c = current();
        if (c && c.kind === 'dm' && !c.loaded) send({ type: 'history', dm: c.name });
        renderLists();
        break;
      }
      case 'presence': {
        if (!S.rooms.includes(m.room)) return;
        const c = conv('#' + m.room);
        c.joined = true;
        if (typeof m.count === 'number') c.count = m.count;
        const found = S.found && S.found.room === m.room ? S.found : null;
        if (m.count_only && !c.expectFull) {
          // A big room says only its count (at most once a second): keep
          // the list we hold, and page it afresh only while it is shown,
          // at most every few seconds.
          const listShown = S.lastRoom === m.room
            && (!matchMedia('(max-width: 700px)').matches || document.body.classList.contains('side-open'));
          if (listShown && !found && Date.now() - (c.repagedAt || 0) > REPAGE_MS) {
            c.repagedAt = Date.now();
            loadMembers(c, null);
          }
        } else if ('next' in m || c.expectFull) {
          // Right after our join: the first page of members.
          c.members = new Set(m.joined || []);
          c.guests = new Set(m.guests || []);
          c.next = typeof m.next === 'string' ? m.next : null;
          c.expectFull = false;
          if (found) search(found.q);
        } else if (m.truncated) {
          // Too much changed to be named: what we hold may be wrong, so
          // load the first page again (the search too).
          c.members.clear();
          c.next = null;
          loadMembers(c, null);
          if (found) search(found.q);
        } else {
          for (const n of m.left || []) {
            c.members.delete(n);
            c.guests?.delete(n);
            if (found) found.list = found.list.filter((f) => f !== n);
          }
          // A nick past the last page loaded comes with a later page.
          for (const n of m.joined || []) if (c.next === null || byNick(n, c.next) <= 0) c.members.add(n);
        }
        guests(c, m);
        renderLists();
        break;
      }
      case 'members': {
        if (!S.rooms.includes(m.room) || !Array.isArray(m.members)) return;
        const c = conv('#' + m.room);
        if (typeof m.count === 'number') c.count = m.count;
        guests(c, m);
        const next = typeof m.next === 'string' ? m.next : null;
        if (m.q) {
          const f = S.found;
          // An answer to a search since changed.
          if (!f || f.room !== m.room || f.q !== m.q) return;
          // A page after a cursor we have since moved from (reloaded).
          if (m.after && m.after !== f.next) return;
          if (!m.after) f.list = [];
          for (const n of m.members) if (!f.list.includes(n)) f.list.push(n);
          f.next = next;
          f.loading = false;
        } else {
          if (m.after && m.after !== c.next) return;
          if (!m.after) c.members = new Set();
          for (const n of m.members) c.members.add(n);
          c.next = next;
          c.loadingMembers = false;
        }
        renderLists();
        break;
      }
      case 'typing': {
        if (m.user === S.me || !S.rooms.includes(m.room)) return;
        conv('#' + m.room).typing.set(m.user, Date.now() + TYPING_SHOW_MS);
        renderTyping();
        setTimeout(renderTyping, TYPING_SHOW_MS + 50);
        break;
      }
      case 'error': {
        // A guest's nick refused at the greeting: choose again.
        if (!S.ready && ['nick_reserved', 'nick_confusable', 'account_required'].includes(m.code)) { A.nickRefused(m); break; }
        const c = m.client_id && S.convs.get(S.inflight.get(m.client_id));
        const p = c && c.pending.get(m.client_id);
        if (p) { p.state = 'failed'; p.why = refusal(m) || m.message || m.code; renderMessages(); }
        S.inflight.delete(m.client_id);
        S.requests.delete(m.client_id);
        if (!M.onError(m)) toast(`${m.code}${m.message ? ': ' + m.message : ''}`);
        break;
      }
      // issue 17: roles and moderation (moderation.js)
      case 'room': M.onRoom(m); break;
      case 'moderation': M.onModeration(m); break;
      case 'audit': M.onAudit(m); break;
      case 'blocks': M.onBlocks(m); break;
      case 'wire': W.onWire(m); break;
      default: break;
    }
  }
  return handle;
}

/** The guests among the nicks of a `presence` or `members` (`guests`):
 * their names carry a guest marker. */
function guests(c, m) {
  if (!Array.isArray(m.guests)) return;
  if (!c.guests) c.guests = new Set();
  for (const n of m.guests) if (typeof n === 'string') c.guests.add(n);
}

/** An edit, delete or reaction is an event of the room's stream with an
 * id of its own: a resume asks for what came after it. */
function seen(c, m) {
  if (c && c.kind === 'room' && typeof m.event_id === 'number' && m.event_id > c.lastSeen) c.lastSeen = m.event_id;
}
