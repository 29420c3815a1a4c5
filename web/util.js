// Small helpers shared by the page's modules: DOM building (text only,
// never HTML), storage that survives private mode, ids.

export const NICK_RE = /^[A-Za-z0-9_.-]{1,24}$/;
export const ROOM_RE = /^[a-z0-9_-]{1,32}$/;

export const $ = (id) => document.getElementById(id);

export const saved = (key, fallback, store = localStorage) => {
  try { const v = store.getItem(key); return v === null ? fallback : JSON.parse(v); } catch { return fallback; }
};
export const save = (key, value, store = localStorage) => {
  try {
    if (value === null || value === undefined) store.removeItem(key);
    else store.setItem(key, JSON.stringify(value));
  } catch { /* private mode, or full */ }
};

/** An element with properties (`text` is its textContent) and children. */
export const el = (tag, props = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null) continue;
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    else if (k.startsWith('data-') || k.startsWith('aria-') || k === 'role') e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;
};

export const newId = () => Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, '0')).join('');

// The server's order of members (docs/PROTOCOL.md, "Members and
// presence"): ASCII case folded, then by code unit. Nicks are ASCII.
export const byNick = (a, b) => {
  const x = a.toLowerCase(); const y = b.toLowerCase();
  if (x !== y) return x < y ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
};
