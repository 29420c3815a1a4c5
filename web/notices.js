// What the page tells the user besides the messages: toasts (coalesced),
// the screen readers' live region, and browser notifications.
import { $, el, saved, save } from './util.js';

/** Says a new message to screen readers: the list itself is not live. */
export function announce(text) {
  const live = $('announce');
  live.append(el('p', { text: text.slice(0, 300) }));
  while (live.childElementCount > 3) live.firstElementChild.remove();
}

/** A short message; the same one again while it shows counts up instead
 * of stacking (40 refused sends make one toast, "×40"). */
export function toast(text) {
  const box = $('toasts');
  let t = [...box.children].find((e) => e.dataset.text === text);
  if (t) {
    t.dataset.n = String(Number(t.dataset.n) + 1);
    t.textContent = `${text} (×${t.dataset.n})`;
    clearTimeout(t.timer);
  } else {
    t = el('div', { class: 'toast', text, 'data-text': text, 'data-n': '1', 'data-testid': 'toast' });
    box.append(t);
    while (box.childElementCount > 3) box.firstElementChild.remove();
  }
  t.timer = setTimeout(() => t.remove(), 6000);
}

/** A browser notification for mention `m` in `c`, while the page is
 * hidden (and notifications are allowed); clicking it opens `c`. */
export function notify(c, m, open) {
  if (!document.hidden || !('Notification' in window) || Notification.permission !== 'granted') return;
  const title = c.kind === 'room' ? `${m.from} mentioned you in #${c.name}` : `${m.from} sent you a direct message`;
  try {
    const n = new Notification(title, { tag: `chat-${c.key}`, body: c.msgs.get(m.id)?.text?.slice(0, 120) || '' });
    n.onclick = () => { window.focus(); open(c.key); };
  } catch { /* not allowed here */ }
}

/** Asks once (from a click or a send: browsers want a user gesture). */
export function askNotifyOnce() {
  if (!('Notification' in window) || Notification.permission !== 'default' || saved('chat.notify-asked', false)) return;
  save('chat.notify-asked', true);
  Notification.requestPermission().catch(() => {});
}
