// The chat client: docs/PROTOCOL.md, spoken with the browser's WebSocket.
// All user text reaches the page through textContent, never as HTML.
'use strict';
(() => {
  const NICK_RE = /^[A-Za-z0-9_.-]{1,24}$/;
  const ROOM_RE = /^[a-z0-9_-]{1,32}$/;
  const TYPING_SEND_MS = 2000;
  const TYPING_SHOW_MS = 3000;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  // An attempt still not open after this long is given up and retried: a
  // browser may leave a socket connecting for minutes (or, when a policy
  // blocks it, closed without a close event), and the page must not wait on it.
  const CONNECT_TIMEOUT_MS = 10000;
  // The search box asks the server once typing pauses this long.
  const SEARCH_DELAY_MS = 200;

  // The server's order of members (docs/PROTOCOL.md, "Members and
  // presence"): ASCII case folded, then by code unit. Nicks are ASCII.
  const byNick = (a, b) => {
    const x = a.toLowerCase(); const y = b.toLowerCase();
    if (x !== y) return x < y ? -1 : 1;
    return a < b ? -1 : a > b ? 1 : 0;
  };
  const countFmt = new Intl.NumberFormat();

  const $ = (id) => document.getElementById(id);
  const saved = (key, fallback) => {
    try { const v = localStorage.getItem(key); return v === null ? fallback : JSON.parse(v); } catch { return fallback; }
  };
  const save = (key, value) => { try { localStorage.setItem(key, JSON.stringify(value)); } catch { /* private mode */ } };
  const el = (tag, props = {}, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === 'text') e.textContent = v;
      else if (k === 'class') e.className = v;
      else if (k.startsWith('data-') || k.startsWith('aria-')) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) if (c) e.append(c);
    return e;
  };
  const newId = () => Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, '0')).join('');

  const token = new URLSearchParams(location.search).get('token');
  const S = {
    nick: saved('chat.nick', null), // the nick asked for
    me: null,                       // the nick in use (welcome.user)
    session: sessionStorage.getItem('chat.session'),
    rooms: saved('chat.rooms', ['general']).filter((r) => ROOM_RE.test(r)),
    convs: new Map(),   // '#room' or '@nick' -> conversation
    current: null,      // key of the conversation in view
    lastRoom: null,     // room whose roster the online list shows
    ws: null,
    ready: false,       // welcome received on this connection
    welcomed: false,    // welcome ever received on this page: reconnects resume
    attempt: 0,
    timer: null,
    stopped: false,
    outbox: [],         // frames written while not connected
    inflight: new Map(), // client_id -> conversation key
    lastTypingSent: 0,
    // The search in the online list: the room it was for, the prefix, the
    // nicks found so far and the cursor of the next page (null: no more).
    found: null,
    searchTimer: null,
  };

  // --- conversations ---------------------------------------------------------

  function conv(key) {
    let c = S.convs.get(key);
    if (!c) {
      c = {
        key, kind: key[0] === '#' ? 'room' : 'dm', name: key.slice(1),
        msgs: new Map(), pending: new Map(), lastSeen: 0, more: false, joined: false,
        unread: 0, typing: new Map(),
        // The members loaded so far: the first pages, in the server's
        // order, up to the cursor `next` (null: all of them); and the
        // room's count. Never the whole of a big room at once.
        members: new Set(), next: null, count: 0, loadingMembers: false, expectFull: true,
      };
      S.convs.set(key, c);
    }
    return c;
  }

  function addMessage(c, m, live) {
    if (c.kind === 'room' && m.id > c.lastSeen) c.lastSeen = m.id;
    if (c.msgs.has(m.id)) return;
    c.msgs.set(m.id, { id: m.id, from: m.from, text: m.text, ts: m.ts });
    if (m.from === S.me) {
      // Our own message may come before its ack: it replaces the oldest
      // pending one with the same text.
      for (const [cid, p] of c.pending) {
        if (p.text === m.text) { c.pending.delete(cid); S.inflight.delete(cid); break; }
      }
    } else if (live && c.key !== S.current) {
      c.unread += 1;
    }
    c.typing.delete(m.from);
  }

  function show(key) {
    S.current = key;
    const c = key && conv(key);
    if (c) {
      c.unread = 0;
      if (c.kind === 'room' && S.lastRoom !== c.name) {
        S.lastRoom = c.name;
        if (S.found) search(S.found.q);
      }
    }
    document.body.classList.remove('side-open');
    $('menu').setAttribute('aria-expanded', 'false');
    renderAll(true);
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

  // --- the connection --------------------------------------------------------

  function send(frame) {
    if (S.ws && S.ws.readyState === WebSocket.OPEN) { S.ws.send(JSON.stringify(frame)); return true; }
    return false;
  }

  function wsUrl() {
    const url = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`;
    return token ? `${url}?token=${encodeURIComponent(token)}` : url;
  }

  function setStatus(state, text = state) {
    const s = $('status');
    s.dataset.state = state;
    s.textContent = text;
  }

  function connect() {
    clearTimeout(S.timer);
    if (S.stopped) return;
    setStatus(S.attempt === 0 && !S.welcomed ? 'connecting' : 'reconnecting');
    const ws = new WebSocket(wsUrl());
    S.ws = ws;
    ws.onopen = () => {
      const hello = { type: 'hello' };
      if (token) hello.token = token; else hello.nick = S.me || S.nick;
      if (S.session) hello.session = S.session;
      if (S.welcomed) {
        // Same page: ask for exactly what was missed in every room.
        hello.resume = {};
        // Rooms joined while offline are joined afresh after the welcome.
        for (const r of S.rooms) if (conv('#' + r).joined) hello.resume[r] = conv('#' + r).lastSeen;
      }
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (e) => {
      let m;
      try { m = JSON.parse(e.data); } catch { return; }
      if (S.ws === ws && m && typeof m.type === 'string') handle(m);
    };
    ws.onclose = (e) => lost(ws, e.code, e.reason);
    const watchdog = setTimeout(() => {
      if (S.ws === ws && ws.readyState !== WebSocket.OPEN) abandon(ws, 'not open after ' + CONNECT_TIMEOUT_MS + ' ms');
    }, CONNECT_TIMEOUT_MS);
    ws.addEventListener('open', () => clearTimeout(watchdog));
  }

  /** Gives up on an attempt that has not opened, as if it had failed. */
  function abandon(ws, why) {
    ws.onclose = null;
    try { ws.close(); } catch { /* already closed */ }
    lost(ws, 1006, why);
  }

  /** The connection `ws` is gone: mark unacknowledged sends failed and schedule a retry. */
  function lost(ws, code, reason) {
    if (S.ws !== ws) return;
    console.info(`chat: connection closed (${code}${reason ? ': ' + reason : ''})`);
    S.ws = null;
    S.ready = false;
    // Sent but never acknowledged: we cannot know whether it was stored.
    for (const c of S.convs.values()) {
      for (const p of c.pending.values()) if (p.state === 'pending' && p.sent) p.state = 'failed';
    }
    if (code === 4001) return stop('authentication required');
    if (code === 4000) return stop('this nick connected from somewhere else');
    S.attempt += 1;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (S.attempt - 1));
    S.timer = setTimeout(connect, base * (0.5 + Math.random()));
    setStatus('reconnecting');
    renderMessages();
  }

  function stop(why) {
    S.stopped = true;
    setStatus('offline');
    const n = $('notice');
    n.textContent = why;
    n.hidden = false;
    renderMessages();
  }

  function handle(m) {
    switch (m.type) {
      case 'welcome': {
        S.me = m.user;
        S.session = m.session;
        sessionStorage.setItem('chat.session', m.session);
        S.ready = true;
        S.attempt = 0;
        const resumed = S.welcomed;
        S.welcomed = true;
        setStatus('online');
        const given = Array.isArray(m.rooms) ? m.rooms : [];
        for (const r of given) {
          if (!S.rooms.includes(r)) { send({ type: 'leave', room: r }); continue; }
          const c = conv('#' + r);
          c.expectFull = true;
          c.typing.clear();
        }
        for (const r of S.rooms) {
          if (given.includes(r)) continue;
          const c = conv('#' + r);
          c.expectFull = true;
          send({ type: 'join', room: r });
        }
        for (const f of S.outbox.splice(0)) {
          send(f);
          const c = S.convs.get(S.inflight.get(f.client_id));
          const p = c && c.pending.get(f.client_id);
          if (p) p.sent = true;
        }
        if (!resumed && !S.current) show(S.rooms.length ? '#' + S.rooms[0] : null);
        else renderAll();
        break;
      }
      case 'msg': {
        if (!S.rooms.includes(m.room)) return;
        const c = conv('#' + m.room);
        addMessage(c, m, true);
        if (c.key === S.current) renderMessages(); else renderLists();
        renderTyping();
        break;
      }
      case 'dm': {
        const peer = m.from === S.me ? m.to : m.from;
        const c = conv('@' + peer);
        addMessage(c, m, true);
        if (c.key === S.current) renderMessages(); else renderLists();
        break;
      }
      case 'history': {
        if (!S.rooms.includes(m.room) || !Array.isArray(m.messages)) return;
        const c = conv('#' + m.room);
        c.joined = true;
        for (const msg of m.messages) addMessage(c, msg, false);
        const oldest = Math.min(...c.msgs.keys());
        if (m.messages.length === 0 || m.messages[0].id === oldest) c.more = !!m.more;
        c.loadingEarlier = false;
        if (c.key === S.current) renderMessages(c.keepScroll);
        c.keepScroll = false;
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
        const c = S.convs.get(S.inflight.get(m.client_id));
        S.inflight.delete(m.client_id);
        const p = c && c.pending.get(m.client_id);
        if (!p) return; // its msg came first and took its place
        c.pending.delete(m.client_id);
        if (!c.msgs.has(m.id)) c.msgs.set(m.id, { id: m.id, from: S.me, text: p.text, ts: p.ts });
        if (c.key === S.current) renderMessages();
        break;
      }
      case 'presence': {
        if (!S.rooms.includes(m.room)) return;
        const c = conv('#' + m.room);
        c.joined = true;
        if (typeof m.count === 'number') c.count = m.count;
        const found = S.found && S.found.room === m.room ? S.found : null;
        if ('next' in m || c.expectFull) {
          // Right after our join: the first page of members.
          c.members = new Set(m.joined || []);
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
            if (found) found.list = found.list.filter((f) => f !== n);
          }
          // A nick past the last page loaded comes with a later page.
          for (const n of m.joined || []) if (c.next === null || byNick(n, c.next) <= 0) c.members.add(n);
        }
        renderLists();
        break;
      }
      case 'members': {
        if (!S.rooms.includes(m.room) || !Array.isArray(m.members)) return;
        const c = conv('#' + m.room);
        if (typeof m.count === 'number') c.count = m.count;
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
        const c = m.client_id && S.convs.get(S.inflight.get(m.client_id));
        const p = c && c.pending.get(m.client_id);
        if (p) { p.state = 'failed'; p.why = m.message; renderMessages(); }
        toast(`${m.code}${m.message ? ': ' + m.message : ''}`);
        break;
      }
      default: break;
    }
  }

  // --- rendering -------------------------------------------------------------

  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  const dateFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  function timeEl(ts) {
    const d = new Date(ts);
    const today = d.toDateString() === new Date().toDateString();
    return el('time', { dateTime: d.toISOString(), title: d.toLocaleString(), text: (today ? timeFmt : dateFmt).format(d) });
  }

  function messageEl(m, state) {
    const li = el('li', { class: 'msg' + (m.from === S.me ? ' mine' : ''), 'data-testid': 'message', 'data-from': m.from, 'data-state': state },
      el('div', { class: 'meta' }, el('span', { class: 'from', text: m.from }), timeEl(m.ts),
        state !== 'sent' ? el('span', { class: 'state', text: state === 'pending' ? 'sending…' : 'not sent' }) : null),
      el('div', { class: 'text', text: m.text }));
    if (m.id !== undefined) li.dataset.id = m.id;
    return li;
  }

  function renderMessages(keepScroll = false) {
    const box = $('scroll');
    const list = $('messages');
    const c = S.current && S.convs.get(S.current);
    const fromBottom = box.scrollHeight - box.scrollTop;
    const atBottom = fromBottom - box.clientHeight < 60;
    const frag = document.createDocumentFragment();
    if (c) {
      for (const id of [...c.msgs.keys()].sort((a, b) => a - b)) frag.append(messageEl(c.msgs.get(id), 'sent'));
      for (const [cid, p] of c.pending) {
        const li = messageEl({ from: S.me || S.nick, text: p.text, ts: p.ts }, p.state);
        li.dataset.clientId = cid;
        if (p.state === 'failed') { li.title = (p.why || 'not sent') + ' (click to retry)'; li.classList.add('retry'); }
        frag.append(li);
      }
    }
    list.replaceChildren(frag);
    $('earlier').hidden = !(c && c.kind === 'room' && c.more && c.msgs.size);
    $('earlier').disabled = !!(c && c.loadingEarlier);
    const empty = $('empty');
    empty.hidden = !!(c && (c.msgs.size || c.pending.size));
    empty.textContent = !c ? 'Join a room to start chatting.' : c.kind === 'dm' ? `Say hi to ${c.name}.` : 'No messages yet.';
    if (keepScroll) box.scrollTop = box.scrollHeight - fromBottom;
    else if (atBottom || renderMessages.force) box.scrollTop = box.scrollHeight;
    renderMessages.force = false;
  }

  function unreadBadge(n) {
    return el('span', { class: 'badge', 'data-testid': 'unread', text: n ? String(n) : '', hidden: !n });
  }

  function renderLists() {
    const rooms = S.rooms.map((r) => {
      const c = conv('#' + r);
      const open = el('button', { type: 'button', class: 'open' }, el('span', { class: 'name', text: '#' + r }), unreadBadge(c.unread));
      open.onclick = () => show(c.key);
      const leave = el('button', { type: 'button', class: 'leave', title: `leave #${r}`, 'aria-label': `leave ${r}`, 'data-testid': `leave-${r}`, text: '×' });
      leave.onclick = () => leaveRoom(r);
      return el('li', { class: c.key === S.current ? 'active' : '', 'data-testid': `room-${r}` }, open, leave);
    });
    $('rooms').replaceChildren(...rooms);

    const dms = [...S.convs.values()].filter((c) => c.kind === 'dm').map((c) => {
      const open = el('button', { type: 'button', class: 'open' }, el('span', { class: 'name', text: '@' + c.name }), unreadBadge(c.unread));
      open.onclick = () => show(c.key);
      return el('li', { class: c.key === S.current ? 'active' : '', 'data-testid': `dm-${c.name}` }, open);
    });
    $('dms').replaceChildren(...dms);
    $('dms-empty').hidden = dms.length > 0;

    const room = S.lastRoom && S.rooms.includes(S.lastRoom) ? S.convs.get('#' + S.lastRoom) : null;
    $('online-room').textContent = room ? `in #${room.name}` : '';
    $('online-count').textContent = room && room.joined ? `${countFmt.format(room.count)} online` : '';
    const found = room && S.found && S.found.room === room.name ? S.found : null;
    const people = !room ? [] : found ? found.list : [...room.members].sort(byNick);
    const more = $('members-more');
    more.hidden = !room || (found ? found.next === null : room.next === null);
    more.disabled = !!(found ? found.loading : room && room.loadingMembers);
    $('online').replaceChildren(...people.map((n) => {
      const b = el('button', { type: 'button', class: 'open', title: n === S.me ? 'you' : `message ${n}` },
        el('span', { class: 'dot' }), el('span', { class: 'name', text: n }), n === S.me ? el('span', { class: 'hint', text: ' (you)' }) : null);
      b.disabled = n === S.me;
      b.onclick = () => show('@' + n);
      return el('li', { 'data-testid': `user-${n}` }, b);
    }));

    const total = [...S.convs.values()].reduce((t, c) => t + c.unread, 0);
    const c = S.current && S.convs.get(S.current);
    const name = c ? (c.kind === 'room' ? '#' : '@') + c.name : 'chat';
    $('title').textContent = name;
    document.title = (total ? `(${total}) ` : '') + name + ' · chat';
    $('me').textContent = S.me ? S.me : '';
    $('composer').placeholder = c ? `Message ${name}` : 'Join a room first';
    $('composer').disabled = $('send').disabled = !c;
  }

  function renderTyping() {
    const c = S.current && S.convs.get(S.current);
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

  function toast(text) {
    const t = el('div', { class: 'toast', text });
    $('toasts').append(t);
    setTimeout(() => t.remove(), 6000);
  }

  // --- user actions ----------------------------------------------------------

  function post(c, text, cid = newId()) {
    const frame = c.kind === 'room'
      ? { type: 'msg', room: c.name, text, client_id: cid }
      : { type: 'dm', to: c.name, text, client_id: cid };
    const p = { text, ts: Date.now(), state: 'pending', sent: false };
    c.pending.set(cid, p);
    S.inflight.set(cid, c.key);
    if (S.ready && send(frame)) p.sent = true; else S.outbox.push(frame);
    renderMessages.force = true;
    renderMessages();
  }

  $('composer-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const c = S.current && S.convs.get(S.current);
    const input = $('composer');
    const text = input.value;
    if (!c || !text.trim()) return;
    if (new TextEncoder().encode(text).length > 4096) return toast('message too long (4096 bytes at most)');
    post(c, text);
    input.value = '';
    input.focus();
  });

  $('composer').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $('composer-form').requestSubmit();
    }
  });

  $('composer').addEventListener('input', () => {
    const c = S.current && S.convs.get(S.current);
    const now = Date.now();
    if (c && c.kind === 'room' && S.ready && $('composer').value.trim() && now - S.lastTypingSent >= TYPING_SEND_MS) {
      S.lastTypingSent = now;
      send({ type: 'typing', room: c.name });
    }
  });

  $('messages').addEventListener('click', (e) => {
    const li = e.target.closest('li.retry');
    const c = li && S.current && S.convs.get(S.current);
    const p = c && c.pending.get(li.dataset.clientId);
    if (!p) return;
    c.pending.delete(li.dataset.clientId);
    S.inflight.delete(li.dataset.clientId);
    post(c, p.text);
  });

  $('earlier').addEventListener('click', () => {
    const c = S.current && S.convs.get(S.current);
    if (!c || c.kind !== 'room' || !c.msgs.size || c.loadingEarlier) return;
    if (send({ type: 'history', room: c.name, before: Math.min(...c.msgs.keys()) })) {
      c.loadingEarlier = true;
      c.keepScroll = true;
      $('earlier').disabled = true;
    }
  });

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

  $('nick-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const nick = $('nick-input').value.trim();
    if (!NICK_RE.test(nick)) return toast('nicks: 1–24 letters, digits, _ - .');
    S.nick = nick;
    save('chat.nick', nick);
    $('nick-dialog').hidden = true;
    start();
  });

  function start() {
    renderAll(true);
    connect();
  }

  // Back on the network: don't wait out the backoff.
  // An attempt made while offline is stale: drop it and try now.
  window.addEventListener('online', () => {
    if (S.stopped || S.attempt === 0) return; // connected, or the first attempt is under way
    if (S.ws && S.ws.readyState === WebSocket.OPEN) return; // open; the welcome is on its way
    if (S.ws) abandon(S.ws, 'back online');
    connect();
  });

  S.current = S.rooms.length ? '#' + S.rooms[0] : null;
  S.lastRoom = S.rooms[0] || null;
  if (token || (typeof S.nick === 'string' && NICK_RE.test(S.nick))) {
    start();
  } else {
    setStatus('offline');
    renderAll();
    $('nick-dialog').hidden = false;
    $('nick-input').focus();
  }
})();
