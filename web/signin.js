// Who the user is (docs/PROTOCOL.md, "Authentication" and "Accounts"): a
// guest's nick, an account (account.js), or a token from elsewhere
// (`--jwt-secret`); renaming and logging out; and what the server's
// closes about identity mean (4001, 4003, 4004, 4005, 1000). `A` holds
// the app's state and what it calls (see app.js).
import { $, save, saved, newId, NICK_RE } from './util.js';
import { MODE as AUTH, ACCOUNTS, accounts } from './account.js';

export function signin(A) {
  const { S, conn, notice, toast, send, setStatus, setComposerEnabled, hasToken } = A;
  const start = () => A.start();

  /** What a close means for who the user is: false when the page must
   * not reconnect (it asks the user, or says why), true otherwise. */
  function closed(code, reason) {
    if (code === 4001 && ACCOUNTS) {
      // Our token refused (expired while away, say): a refresh may save
      // the session; otherwise, or with no account, the login form.
      if (acct.signedIn()) {
        acct.refresh().then((ok) => { if (ok) conn.restart(); });
      } else {
        // A token from elsewhere (`/?token=`), refused; or none at all.
        const had = hasToken();
        save('chat.token', null);
        endSession(had ? 'That sign-in token was refused (invalid or expired): log in instead.' : 'This server needs an account: log in or sign up.');
      }
      return false;
    }
    if (code === 4001) {
      // A token missing, invalid or expired: ask for one.
      save('chat.token', null);
      S.token = null;
      askToken(AUTH === 'token' || S.welcomed ? 'That token was refused (invalid or expired). Paste a new one.' : '');
      return false;
    }
    if (code === 4004) {
      notice('You are banned from this server.');
      return false;
    }
    if (code === 4005) {
      // This session was revoked: a logout (here or elsewhere) or a
      // password change on another device.
      if (S.loggingOut) { loggedOut(); return false; }
      acct.forget();
      endSession('You were logged out: this session was ended (a logout, or a password change elsewhere). Log in again.');
      return false;
    }
    if (code === 1000 && S.welcomed) { loggedOut(); return false; }
    if (code === 4000) { notice('This nick connected from somewhere else.'); return false; }
    if (code === 4002) { notice('Too many tabs or devices are connected as you: close one and reload.'); return false; }
    const renamed = /^renamed to (\S+)$/.exec(reason || '');
    if (code === 4003 && renamed && NICK_RE.test(renamed[1])) {
      // Renamed in another tab: come back under the new nick, with the
      // secret that tab got in `renamed` (shared in localStorage).
      S.me = S.nick = renamed[1];
      save('chat.nick', renamed[1]);
    }
    return true;
  }

  /** Back to the login form, saying why (the session is over). */
  function endSession(why) {
    S.token = null;
    conn.stop();
    acct.show('login', why, S.me || S.nick || '');
    setComposerEnabled();
  }

  /** A guest `hello` refused before any welcome (the nick is an account's,
   * or looks like one in use): the nick dialog again, saying why. */
  function nickRefused(m) {
    const text = m.code === 'nick_reserved'
      ? 'That nick belongs to an account: log in if it is yours, or choose another.'
      : m.code === 'nick_confusable'
        ? 'That nick looks too much like one already in use: choose another.'
        : 'This server needs an account: log in or sign up.';
    if (m.code === 'account_required') { endSession(text); return; }
    conn.stop();
    S.nick = null;
    save('chat.nick', null);
    askNick(text);
  }

  const acct = accounts({
    token: (token) => { S.token = token; },
    signedIn: (nick) => {
      // A guest who logs in or signs up: the page starts afresh as the
      // account (its guest session is no longer ours).
      const switching = S.welcomed;
      S.token = saved('chat.token', null);
      S.nick = nick;
      save('chat.nick', nick);
      save('chat.session', null);
      S.session = null;
      if (switching) { location.reload(); return; }
      $('nick-dialog').hidden = true;
      notice('');
      if (conn.stopped) conn.restart(); else start();
    },
    ended: (why) => endSession(why),
    toast,
  });

  // --- the account: rename, log out ---------------------------------------------


  $('rename-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const nick = $('rename-input').value.trim();
    if (!NICK_RE.test(nick)) return toast('nicks: 1–24 letters, digits, _ - .');
    if (nick === S.me) return;
    if (send({ type: 'nick', nick, client_id: newId() })) $('rename-input').value = '';
    else toast('not connected: try again when back online');
  });

  $('logout').addEventListener('click', async () => {
    S.loggingOut = true;
    // An account's session is revoked on the server (its connections
    // close with 4005); a guest's nick is freed everywhere.
    if (ACCOUNTS && acct.signedIn()) { await acct.logout(); loggedOut(); return; }
    if (!send({ type: 'logout' })) loggedOut();
  });

  /** Logged out (here, or in another tab: the server closes every
   * connection of the user with 1000): nothing of the user stays. */
  function loggedOut() {
    for (const key of ['chat.nick', 'chat.token', 'chat.refresh', 'chat.expires', 'chat.drafts', 'chat.session', 'chat.current']) save(key, null);
    location.reload();
  }

  // --- signing in: a nick, or a token with --jwt-secret ----------------------------------

  $('nick-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const nick = $('nick-input').value.trim();
    if (!NICK_RE.test(nick)) return toast('nicks: 1–24 letters, digits, _ - .');
    S.nick = nick;
    save('chat.nick', nick);
    $('nick-dialog').hidden = true;
    if (conn.stopped) conn.restart(); else start();
  });

  /** The nick dialog (a guest's nick), saying why if it was refused. */
  function askNick(why = '') {
    $('nick-error').textContent = why;
    $('nick-error').hidden = !why;
    $('nick-accounts').hidden = AUTH !== 'open';
    $('auth-dialog').hidden = true;
    $('nick-dialog').hidden = false;
    setStatus('offline');
    setComposerEnabled();
    $('nick-input').focus();
  }

  $('nick-to-login').addEventListener('click', () => acct.show('login', '', $('nick-input').value.trim()));
  $('nick-to-signup').addEventListener('click', () => acct.show('signup', '', $('nick-input').value.trim()));
  $('auth-to-guest').addEventListener('click', () => askNick(''));
  $('guest-signup').addEventListener('click', () => acct.show('signup', 'Sign up to keep this nick: it is then yours alone.', S.me || ''));
  $('guest-login').addEventListener('click', () => acct.show('login', '', ''));

  function askToken(why) {
    $('token-error').textContent = why || '';
    $('token-error').hidden = !why;
    $('token-dialog').hidden = false;
    notice('Sign in with a token to chat.');
    setComposerEnabled();
    $('token-input').focus();
  }

  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $('token-input').value.trim();
    if (!token) return;
    S.token = token;
    save('chat.token', token);
    $('token-input').value = '';
    $('token-dialog').hidden = true;
    notice('');
    if (conn.stopped) conn.restart(); else start();
  });

  return { acct, closed, nickRefused, askNick, askToken };
}
