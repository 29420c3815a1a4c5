// The wire panel (issue 22): the frames of this page's own WebSocket as
// the server parsed and sent them, field by field, each field linked to
// the section of RFC 6455 (or RFC 7692, for compression) that defines it.
// Off by default; opening it sends {type:'wire', on:true}, closing it
// {type:'wire', on:false}, and the server records nothing for a
// connection that did not ask (docs/PROTOCOL.md, "The wire panel").
import { $ } from './util.js';

const RFC = 'https://www.rfc-editor.org/rfc/rfc6455#section-';
const RFC7692 = 'https://www.rfc-editor.org/rfc/rfc7692#section-';
// Which section says what each field means.
export const SECTION = {
  fin: RFC + '5.2', rsv: RFC + '5.2', opcode: RFC + '5.2', mask: RFC + '5.2', len: RFC + '5.2',
  key: RFC + '5.3', fragment: RFC + '5.4', close: RFC + '5.5.1', ping: RFC + '5.5.2',
  pong: RFC + '5.5.3', data: RFC + '5.6', code: RFC + '7.4.1',
  compressed: RFC7692 + '6', inflated: RFC7692 + '7.2.2',
};
// The most frames shown; older ones leave the list.
const MAX_SHOWN = 200;
// Payload characters shown before the frame is expanded.
const PREVIEW = 40;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** A field's value, linked to the section that defines it. */
function field(testId, text, href, title) {
  const a = el('a', 'wf', text);
  a.href = href;
  a.target = '_blank';
  a.rel = 'noopener noreferrer';
  a.dataset.testid = testId;
  if (title) a.title = title;
  return a;
}

/** Where a frame's payload is described: by its opcode. */
function payloadSection(f) {
  switch (f.op) {
    case 'close': return SECTION.close;
    case 'ping': return SECTION.ping;
    case 'pong': return SECTION.pong;
    case 'continuation': return SECTION.fragment;
    default: return SECTION.data;
  }
}

function frameRow(f) {
  const li = el('li', 'wire-frame');
  li.dataset.testid = 'wire-frame';
  li.dataset.dir = f.dir;
  li.dataset.op = f.op;
  li.dataset.seq = String(f.seq);
  const head = el('div', 'wire-head');
  head.append(el('span', 'wire-dir', f.dir === 'in' ? 'client → server' : 'server → client'));
  head.append(field('wire-fin', `FIN=${f.fin ? 1 : 0}`, f.fin ? SECTION.fin : SECTION.fragment,
    f.fin ? 'the last frame of its message' : 'more frames of this message follow (§5.4)'));
  head.append(field('wire-rsv', `RSV=${+f.rsv1}${+f.rsv2}${+f.rsv3}`, f.rsv1 ? SECTION.compressed : SECTION.rsv,
    f.rsv1 ? 'RSV1: compressed with permessage-deflate (RFC 7692 §6)' : 'no extension bits'));
  head.append(field('wire-op', `${f.op} (0x${f.opcode.toString(16)})`, SECTION.opcode, 'opcode'));
  head.append(field('wire-mask', `MASK=${f.mask ? 1 : 0}`, SECTION.mask,
    f.mask ? 'masked: a client masks every frame (§5.1)' : 'not masked: a server never masks (§5.1)'));
  if (f.key) head.append(field('wire-key', `key ${f.key}`, SECTION.key, 'masking key (§5.3)'));
  head.append(field('wire-len', `len=${f.len} (${f.len_encoding})`, SECTION.len,
    `payload length in the ${f.len_encoding} form; header ${f.header_len} bytes`));
  if (f.inflated !== undefined) {
    head.append(field('wire-deflate', `${f.len} B compressed → ${f.inflated} B`, SECTION.inflated,
      'compressed size on the wire against the inflated size (RFC 7692 §7.2)'));
  }
  if (f.close) {
    const code = f.close.code === undefined ? 'no code' : `code ${f.close.code}: ${f.close.meaning}`;
    head.append(field('wire-close', code + (f.close.reason ? ` "${f.close.reason}"` : ''), SECTION.code, 'status code (§7.4.1)'));
  }
  li.append(head);
  if (f.kept > 0 || f.total > 0) {
    const details = el('details', 'wire-payload');
    details.dataset.testid = 'wire-payload';
    const cut = f.payload.length > PREVIEW;
    const summary = el('summary', null, (cut ? f.payload.slice(0, PREVIEW) + '…' : f.payload) || '(empty)');
    summary.dataset.testid = 'wire-preview';
    const pre = el('pre', null, f.payload);
    pre.dataset.testid = 'wire-full';
    const note = el('p', 'hint');
    const what = f.payload_format === 'hex' ? 'in hex' : 'as text';
    note.append(f.kept < f.total
      ? `${f.kept} of ${f.total} bytes kept, ${what}. `
      : `${f.total} bytes, ${what}. `);
    note.append(field('wire-payload-rfc', 'payload', payloadSection(f)));
    details.append(summary, pre, note);
    li.append(details);
  }
  return li;
}

/** The panel, over the app: `send(frame)` says something to the server. */
export function wirePanel({ send }) {
  let open = false;
  let skipped = 0;
  let dropped = 0;
  let recording = false;
  const list = $('wire-list');

  function renderNote() {
    const parts = [recording ? 'Recording this connection’s frames.' : 'Not recording.'];
    if (skipped) parts.push(`${skipped} frames of this panel’s own traffic not shown.`);
    if (dropped) parts.push(`${dropped} frames dropped (more than the server keeps between two batches).`);
    $('wire-note').textContent = parts.join(' ');
    $('wire-panel').dataset.recording = recording ? 'on' : 'off';
  }

  function setOpen(on) {
    open = on;
    $('wire-panel').hidden = !on;
    $('wire-toggle').setAttribute('aria-pressed', String(on));
    send({ type: 'wire', on });
    renderNote();
  }

  $('wire-toggle').addEventListener('click', () => setOpen(!open));
  $('wire-close').addEventListener('click', () => setOpen(false));
  $('wire-clear').addEventListener('click', () => list.replaceChildren());

  return {
    /** A `wire` event: recording on or off, and frames. */
    onWire(m) {
      recording = m.on === true;
      skipped += m.skipped || 0;
      dropped = m.dropped || 0;
      if (recording && open) {
        for (const f of m.frames || []) list.append(frameRow(f));
        while (list.children.length > MAX_SHOWN) list.firstElementChild.remove();
      }
      renderNote();
    },
    /** A new connection records nothing until asked again. */
    onWelcome() {
      recording = false;
      dropped = 0;
      if (open) send({ type: 'wire', on: true });
      renderNote();
    },
  };
}
