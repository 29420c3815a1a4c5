// The side panel (rooms, direct messages, who is online), the title and
// the unread badges (side panel, ☰ button, document title).
import { $, el, byNick } from './util.js';
import { guestTag } from './render.js';

const countFmt = new Intl.NumberFormat();

function unreadBadge(c) {
  const n = c.unread;
  // The server counts at most 999 ("999 or more").
  const b = el('span', { class: 'badge' + (c.mentions ? ' mention' : ''), 'data-testid': 'unread', text: !n ? '' : n >= 999 ? '999+' : String(n), hidden: !n });
  if (n) b.setAttribute('aria-label', `${n} unread${c.mentions ? `, ${c.mentions} mentioning you` : ''}`);
  return b;
}

/** Renders the side panel and title from the app's state `S`; `on` holds
 * the click handlers (`show(key)`, `leave(room)`, `member(nick, button)`:
 * a member's menu) and `roleIn(conv, nick)`. */
export function renderSide(S, on) {
  const rooms = S.rooms.map((r) => {
    const c = S.conv('#' + r);
    const open = el('button', { type: 'button', class: 'open' }, el('span', { class: 'name', text: '#' + r }), unreadBadge(c));
    open.onclick = () => on.show(c.key);
    const leave = el('button', { type: 'button', class: 'leave', title: `leave #${r}`, 'aria-label': `leave ${r}`, 'data-testid': `leave-${r}`, text: '×' });
    leave.onclick = () => on.leave(r);
    return el('li', { class: c.key === S.current ? 'active' : '', 'data-testid': `room-${r}` }, open, leave);
  });
  $('rooms').replaceChildren(...rooms);

  const dms = [...S.convs.values()].filter((c) => c.kind === 'dm')
    .sort((a, b) => (b.lastId || 0) - (a.lastId || 0) || byNick(a.name, b.name)).map((c) => {
      const open = el('button', { type: 'button', class: 'open' }, el('span', { class: 'name', text: '@' + c.name }), unreadBadge(c));
      open.onclick = () => on.show(c.key);
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
    const role = on.roleIn(room, n);
    const guest = room.guests && room.guests.has(n);
    const b = el('button', { type: 'button', class: 'open', title: n === S.me ? 'you' : `${n}: message, and more` },
      el('span', { class: 'dot' }), el('span', { class: 'name', text: n }),
      role === 'owner' || role === 'moderator' || role === 'admin' ? el('span', { class: 'tag role', 'data-testid': 'role-tag', text: role === 'moderator' ? 'mod' : role }) : null,
      guest ? guestTag() : null,
      n === S.me ? el('span', { class: 'hint', text: ' (you)' }) : null);
    b.disabled = n === S.me;
    if (n !== S.me) {
      b.setAttribute('aria-haspopup', 'menu');
      b.setAttribute('aria-expanded', 'false');
      b.onclick = () => on.member(n, b);
    }
    return el('li', { 'data-testid': `user-${n}` }, b);
  }));

  // Unread elsewhere: in the title, and on the ☰ button (the side panel
  // is hidden on a phone).
  let total = 0; let mentions = 0;
  for (const c of S.convs.values()) { total += c.unread; mentions += c.mentions; }
  const c = S.current && S.convs.get(S.current);
  const name = c ? (c.kind === 'room' ? '#' : '@') + c.name : 'chat';
  $('title').textContent = name;
  document.title = (mentions ? `(@${mentions}) ` : total ? `(${total}) ` : '') + name + ' · chat';
  const mb = $('menu-unread');
  mb.textContent = total ? String(total) : '';
  mb.hidden = !total;
  mb.classList.toggle('mention', mentions > 0);
  $('menu-label').textContent = total ? ` rooms and people, ${total} unread` : ' rooms and people';
  $('me').textContent = S.me || '';
  $('account').hidden = !S.me;
}
