// The message text's formatting: a small, safe subset of markdown —
// **bold**, *italic* or _italic_, `code`, ``` code blocks ```, links to
// http(s) URLs, and @mentions — built from DOM nodes whose text is set
// with textContent. Nothing the user wrote is ever parsed as HTML, and a
// link can only ever point at http: or https:.

const NICK_CHARS = /[A-Za-z0-9_.-]/;
// One inline token at a time, leftmost first. Emphasis markers must not
// touch a word on their outer side (snake_case_names stay as they are).
const INLINE = new RegExp([
  '(`[^`\\n]+`)', // 1 code
  '((?<![\\w*])\\*\\*(?=\\S)[^\\n]*?\\S\\*\\*(?![\\w*]))', // 2 bold
  '((?<![\\w*])\\*(?=[^\\s*])[^*\\n]*?[^\\s*]\\*(?![\\w*])|(?<![\\w*])\\*[^\\s*]\\*(?![\\w*]))', // 3 italic *
  '((?<![\\w_])_(?=[^\\s_])[^_\\n]*?[^\\s_]_(?![\\w_])|(?<![\\w_])_[^\\s_]_(?![\\w_]))', // 4 italic _
  '(https?:\\/\\/[^\\s<>"\'`]+)', // 5 link
  '((?<![\\w@.])@[A-Za-z0-9_.-]{1,24})', // 6 mention
].join('|'), 'gi');

// Punctuation that ends a sentence rather than the URL.
const URL_TAIL = /[.,;:!?'")\]}]+$/;

/** `href` if it is an http(s) URL, else null. */
export function safeUrl(href) {
  try {
    const u = new URL(href);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch { return null; }
}

function link(href, text) {
  const a = document.createElement('a');
  a.href = href;
  a.textContent = text;
  a.target = '_blank';
  a.rel = 'noopener noreferrer nofollow';
  return a;
}

/** Appends the inline formatting of `text` to `parent`; `me` is the
 * reader's nick (mentions of it are marked). `depth` bounds nesting. */
function inline(parent, text, me, depth = 0) {
  let at = 0;
  INLINE.lastIndex = 0;
  for (let m = INLINE.exec(text); m; m = INLINE.exec(text)) {
    let [whole] = m;
    const start = m.index;
    let tail = '';
    if (m[5]) {
      // Trailing punctuation, unless it closes a bracket the URL opened.
      const cut = whole.match(URL_TAIL);
      if (cut) {
        let keep = whole.slice(0, whole.length - cut[0].length);
        let rest = cut[0];
        while (rest.startsWith(')') && (keep.split('(').length > keep.split(')').length)) {
          keep += ')'; rest = rest.slice(1);
        }
        whole = keep; tail = rest;
      }
    }
    if (start > at) parent.append(text.slice(at, start));
    if (m[1]) {
      parent.append(Object.assign(document.createElement('code'), { textContent: whole.slice(1, -1) }));
    } else if (m[2] || m[3] || m[4]) {
      const strong = !!m[2];
      const node = document.createElement(strong ? 'strong' : 'em');
      const inner = strong ? whole.slice(2, -2) : whole.slice(1, -1);
      if (depth < 3) inline(node, inner, me, depth + 1); else node.textContent = inner;
      parent.append(node);
      INLINE.lastIndex = start + m[0].length; // the recursion moved it
    } else if (m[5]) {
      const href = safeUrl(whole);
      parent.append(href ? link(href, whole) : whole);
      if (tail) parent.append(tail);
    } else if (m[6]) {
      let nick = whole.slice(1);
      // "@bob." at a sentence's end mentions bob.
      let trail = '';
      while (nick.endsWith('.')) { nick = nick.slice(0, -1); trail += '.'; }
      const span = document.createElement('span');
      span.className = 'mention' + (me && nick.toLowerCase() === me.toLowerCase() ? ' me' : '');
      span.dataset.testid = 'mention';
      span.textContent = '@' + nick;
      parent.append(span);
      if (trail) parent.append(trail);
    }
    at = start + m[0].length;
    INLINE.lastIndex = at;
  }
  if (at < text.length) parent.append(text.slice(at));
}

/** The formatted `text` as a fragment of DOM nodes. */
export function renderText(text, me) {
  const frag = document.createDocumentFragment();
  // Fenced code blocks first (a line of ``` opens one, the next closes
  // it): nothing inside them is formatted. An unclosed fence is text.
  let rest = text;
  while (rest.length) {
    const open = rest.search(/^```[^\n`]*$/m);
    const bodyAt = open < 0 ? -1 : rest.indexOf('\n', open) + 1;
    const close = bodyAt <= 0 ? -1 : rest.slice(bodyAt).search(/^```[ \t]*$/m);
    if (close < 0) { inline(frag, rest, me); break; }
    if (open > 0) inline(frag, rest.slice(0, open).replace(/\n$/, ''), me);
    const code = document.createElement('code');
    code.textContent = rest.slice(bodyAt, bodyAt + close).replace(/\n$/, '');
    const pre = document.createElement('pre');
    pre.append(code);
    frag.append(pre);
    const eol = rest.indexOf('\n', bodyAt + close);
    rest = eol < 0 ? '' : rest.slice(eol + 1);
  }
  return frag;
}

/** Whether `text` mentions `nick` (as the server counts it: `@nick`). */
export function mentions(text, nick) {
  if (!nick) return false;
  const lower = text.toLowerCase();
  const want = '@' + nick.toLowerCase();
  for (let i = lower.indexOf(want); i >= 0; i = lower.indexOf(want, i + 1)) {
    const before = i === 0 ? '' : lower[i - 1];
    const after = lower[i + want.length] || '';
    if (before && /[\w@.]/.test(before)) continue;
    if (after && NICK_CHARS.test(after) && !(after === '.' && !NICK_CHARS.test(lower[i + want.length + 1] || ''))) continue;
    return true;
  }
  return false;
}
