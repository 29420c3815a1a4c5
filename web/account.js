// Accounts (docs/PROTOCOL.md, "Accounts"): signing up, logging in and
// out and changing the password over the server's JSON API, and keeping
// the session's token fresh. The page learns the server's mode from its
// `<meta name="chat-auth">`: `nick` (no accounts: pick a nick), `open`
// (a guest nick, or an account), `required` (accounts only) or `token`
// (a token from elsewhere, `--jwt-secret`).
//
// The session lives in localStorage (`chat.token`, `chat.refresh`,
// `chat.expires`), shared by the tabs of this browser: one tab refreshes
// it (under a Web Lock, so two tabs never spend the same refresh token)
// and the others take the new pair from storage.
import { $, saved, save, NICK_RE } from './util.js';

export const MODE = (() => {
  const m = document.querySelector('meta[name="chat-auth"]')?.content;
  return m === 'open' || m === 'required' || m === 'token' ? m : 'nick';
})();
/** Whether the server has accounts of its own (`--accounts open|required`). */
export const ACCOUNTS = MODE === 'open' || MODE === 'required';

// Refresh this long before the token expires, or at four fifths of its
// life when that is shorter: a reconnect always has a live token.
const REFRESH_EARLY_MS = 60_000;
// A refresh that could not reach the server is tried again this soon.
const REFRESH_RETRY_MS = 15_000;
// The shortest password the server accepts (docs/PROTOCOL.md, "Accounts");
// checked here too, so the user hears it before a round trip.
const MIN_PASSWORD = 10;

/** One call of the API: `{ok, status, data}` or `{ok: false, status,
 * error, message, retryAfter}` (`error: 'network'` when unreachable). */
async function api(path, body, token) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(path, { method: 'POST', headers, body: JSON.stringify(body || {}), cache: 'no-store', credentials: 'omit' });
  } catch {
    return { ok: false, status: 0, error: 'network' };
  }
  let data = null;
  if (res.status !== 204) { try { data = await res.json(); } catch { data = null; } }
  if (res.ok) return { ok: true, status: res.status, data };
  const error = data && typeof data.error === 'string' ? data.error : res.status === 404 ? 'not_found' : 'unknown';
  return { ok: false, status: res.status, error, message: data && data.message, retryAfter: Number(res.headers.get('Retry-After')) || 0 };
}

/** What a refusal means, in words, and which field it is about
 * (`nick`, `password`, `old`, or null for the whole form). `what` is the
 * form: 'login', 'signup' or 'password'. */
export function explain(r, what) {
  switch (r.error) {
    case 'weak_password':
      return { field: 'password', text: `That password is too easy to guess: use at least ${MIN_PASSWORD} characters, and not a common password.` };
    case 'nick_taken':
      return { field: 'nick', text: 'That nick is already registered. Choose another, or log in if it is yours.' };
    case 'nick_confusable':
      return { field: 'nick', text: 'That nick looks too much like one already in use (l, I and 1 or O and 0 count as the same, and so does a trailing dot). Choose another.' };
    case 'bad_credentials':
      return what === 'password'
        ? { field: 'old', text: 'That is not your current password.' }
        : { field: null, text: 'Wrong nick or password.' };
    case 'rate_limited':
      return { field: null, text: tooMany(r.retryAfter), retryAfter: r.retryAfter };
    case 'invalid_field':
      return { field: /password|\bnew\b/.test(r.message || '') ? 'password' : /nick/.test(r.message || '') ? 'nick' : null, text: r.message || 'The server refused one of the fields.' };
    case 'bad_token':
      return { field: null, text: 'Your session has ended: log in again.' };
    case 'insecure':
      return { field: null, text: 'Accounts need a secure connection: open this page over https.' };
    case 'unavailable':
      return { field: null, text: 'The server cannot do this right now: try again in a moment.' };
    case 'not_found':
      return { field: null, text: 'This server has no accounts.' };
    case 'network':
      return { field: null, text: 'The server cannot be reached: check your connection and try again.' };
    default:
      return { field: null, text: r.message || `The server refused (${r.error}).` };
  }
}

const tooMany = (s) => (s > 0 ? `Too many attempts: try again in ${s} s.` : 'Too many attempts: wait a little and try again.');

/** The stored session, if any: `{token, refresh, expires}`. */
export function stored() {
  return { token: saved('chat.token', null), refresh: saved('chat.refresh', null), expires: saved('chat.expires', 0) };
}

/**
 * The account side of the page. `on` holds what the app does:
 * `token(token)` (a fresh token, keep using it), `signedIn(nick, switching)`
 * (logged in or signed up: connect with the stored token), `ended(why)`
 * (the session is gone: `why` says why, for the login form).
 */
export function accounts(on) {
  let timer = null;
  let current = stored();

  /** Keeps a pair the API gave (`{nick, token, refresh, expires_in}`). */
  function keep(d) {
    const life = Math.max(1, Number(d.expires_in) || 0) * 1000;
    current = { token: d.token, refresh: d.refresh, expires: Date.now() + life, life };
    save('chat.token', current.token);
    save('chat.refresh', current.refresh);
    save('chat.expires', current.expires);
    schedule();
  }

  function forget() {
    clearTimeout(timer);
    current = { token: null, refresh: null, expires: 0 };
    for (const k of ['chat.token', 'chat.refresh', 'chat.expires']) save(k, null);
  }

  function schedule() {
    clearTimeout(timer);
    if (!current.refresh || !current.expires) return;
    const left = current.expires - Date.now();
    const early = Math.min(REFRESH_EARLY_MS, (current.life || left) / 5);
    timer = setTimeout(() => refresh(), Math.max(0, left - early));
  }

  /** Makes sure the stored token is fresh: another tab's, or a new pair.
   * Resolves true with a usable token, false when the session is over. */
  async function refresh() {
    const run = async () => {
      const s = stored();
      // Another tab refreshed meanwhile: take its pair.
      if (s.token && s.token !== current.token && s.expires - Date.now() > REFRESH_EARLY_MS / 2) {
        current = { ...s, life: s.expires - Date.now() };
        schedule();
        on.token(s.token);
        return true;
      }
      if (!s.refresh) return false;
      const r = await api('/api/refresh', { refresh: s.refresh });
      if (r.ok && r.data && typeof r.data.token === 'string') {
        keep(r.data);
        on.token(r.data.token);
        return true;
      }
      if (r.error === 'bad_token' || r.error === 'bad_credentials' || r.error === 'not_found') {
        forget();
        on.ended('Your session has expired: log in again.');
        return false;
      }
      // Not reached, or busy: try again soon; the token may still hold.
      clearTimeout(timer);
      timer = setTimeout(() => refresh(), REFRESH_RETRY_MS);
      return s.expires > Date.now();
    };
    if (navigator.locks) return navigator.locks.request('chat.refresh', run);
    return run();
  }

  /** Before connecting: a token that is expired, or about to be, is
   * refreshed first. */
  async function fresh() {
    current = stored();
    if (!current.token || !current.refresh) return !!current.token;
    if (current.expires - Date.now() > REFRESH_EARLY_MS / 2) { schedule(); return true; }
    return refresh();
  }

  // Another tab refreshed, or logged out.
  window.addEventListener('storage', (e) => {
    if (e.key !== 'chat.token') return;
    const s = stored();
    if (s.token && s.token !== current.token) {
      current = { ...s, life: s.expires - Date.now() };
      schedule();
      on.token(s.token);
    }
  });

  // --- the forms

  const form = { mode: 'login', until: 0, tick: null };

  function fieldError(name, text) {
    const input = $(`auth-${name}`);
    const out = $(`auth-${name}-error`);
    out.textContent = text || '';
    out.hidden = !text;
    if (text) input.setAttribute('aria-invalid', 'true'); else input.removeAttribute('aria-invalid');
  }

  function formError(text) {
    $('auth-error').textContent = text || '';
    $('auth-error').hidden = !text;
  }

  function clearErrors() { fieldError('nick'); fieldError('password'); formError(''); }

  /** Shows the account dialog: `mode` 'login' or 'signup', `why` a line
   * above the form, `nick` to fill in. */
  function show(mode, why = '', nick = '') {
    form.mode = mode;
    const signup = mode === 'signup';
    $('auth-title').textContent = signup ? 'Sign up' : 'Log in';
    $('auth-submit').textContent = signup ? 'Create account' : 'Log in';
    $('auth-password').autocomplete = signup ? 'new-password' : 'current-password';
    $('auth-password-hint').hidden = !signup;
    $('auth-to-signup').hidden = signup;
    $('auth-to-login').hidden = !signup;
    $('auth-to-guest').hidden = MODE !== 'open';
    $('auth-why').textContent = why;
    $('auth-why').hidden = !why;
    clearErrors();
    if (nick) $('auth-nick').value = nick;
    $('nick-dialog').hidden = true;
    $('auth-dialog').hidden = false;
    ($('auth-nick').value ? $('auth-password') : $('auth-nick')).focus();
  }

  function hide() { $('auth-dialog').hidden = true; }

  /** A rate-limit countdown on the form's button. */
  function holdOff(seconds, say) {
    clearInterval(form.tick);
    form.until = Date.now() + seconds * 1000;
    const step = () => {
      const s = Math.ceil((form.until - Date.now()) / 1000);
      if (s <= 0) { clearInterval(form.tick); $('auth-submit').disabled = false; say(''); return; }
      $('auth-submit').disabled = true;
      say(tooMany(s));
    };
    step();
    form.tick = setInterval(step, 1000);
  }

  $('auth-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors();
    const nick = $('auth-nick').value.trim();
    const password = $('auth-password').value;
    const signup = form.mode === 'signup';
    let bad = false;
    if (!NICK_RE.test(nick)) { fieldError('nick', 'A nick is 1–24 letters, digits, _ - or .'); bad = true; }
    if (!password) { fieldError('password', 'Enter your password.'); bad = true; }
    else if (signup && password.length < MIN_PASSWORD) { fieldError('password', `Use at least ${MIN_PASSWORD} characters.`); bad = true; }
    if (bad) { $(`auth-${$('auth-nick').hasAttribute('aria-invalid') ? 'nick' : 'password'}`).focus(); return; }
    $('auth-submit').disabled = true;
    const r = await api(signup ? '/api/register' : '/api/login', { nick, password });
    $('auth-submit').disabled = false;
    if (r.ok && r.data && typeof r.data.token === 'string') {
      $('auth-password').value = '';
      keep(r.data);
      hide();
      on.signedIn(typeof r.data.nick === 'string' ? r.data.nick : nick);
      return;
    }
    const x = explain(r, signup ? 'signup' : 'login');
    if (x.field === 'nick' || x.field === 'password') { fieldError(x.field, x.text); $(`auth-${x.field}`).focus(); }
    else if (x.retryAfter) holdOff(x.retryAfter, formError);
    else formError(x.text);
  });

  $('auth-to-signup').addEventListener('click', () => show('signup', '', $('auth-nick').value.trim()));
  $('auth-to-login').addEventListener('click', () => show('login', '', $('auth-nick').value.trim()));

  // Changing the password: the other sessions are logged out by the server.
  function pwError(name, text) {
    const out = $(`pw-${name}-error`);
    out.textContent = text || '';
    out.hidden = !text;
    if (text) $(`pw-${name}`).setAttribute('aria-invalid', 'true'); else $(`pw-${name}`).removeAttribute('aria-invalid');
  }
  const pwForm = (text) => { $('pw-error').textContent = text || ''; $('pw-error').hidden = !text; };

  function showPassword() {
    pwError('old'); pwError('new'); pwForm('');
    $('pw-old').value = $('pw-new').value = '';
    $('password-dialog').hidden = false;
    $('pw-old').focus();
  }
  const hidePassword = () => { $('password-dialog').hidden = true; $('change-password').focus(); };

  $('change-password').addEventListener('click', showPassword);
  $('pw-cancel').addEventListener('click', hidePassword);
  $('password-dialog').addEventListener('keydown', (e) => { if (e.key === 'Escape') hidePassword(); });
  $('password-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    pwError('old'); pwError('new'); pwForm('');
    const old = $('pw-old').value;
    const next = $('pw-new').value;
    if (!old) { pwError('old', 'Enter your current password.'); $('pw-old').focus(); return; }
    if (next.length < MIN_PASSWORD) { pwError('new', `Use at least ${MIN_PASSWORD} characters.`); $('pw-new').focus(); return; }
    $('pw-submit').disabled = true;
    const r = await api('/api/password', { old, new: next }, stored().token);
    $('pw-submit').disabled = false;
    if (r.ok) {
      hidePassword();
      on.toast('Password changed. Your other sessions were logged out.');
      return;
    }
    if (r.error === 'bad_token') { $('password-dialog').hidden = true; forget(); on.ended('Your session has ended: log in again.'); return; }
    const x = explain(r, 'password');
    if (x.field === 'old') { pwError('old', x.text); $('pw-old').focus(); }
    else if (x.field === 'password') { pwError('new', x.text); $('pw-new').focus(); }
    else pwForm(x.text);
  });

  /** Logs this session out on the server (its token and refresh token
   * stop working, its connections close with 4005), then forgets it. */
  async function logout() {
    const { token } = stored();
    if (token) await api('/api/logout', {}, token);
    forget();
  }

  return { show, hide, fresh, refresh, forget, logout, showPassword, signedIn: () => !!stored().refresh };
}
