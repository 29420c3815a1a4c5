// The WebSocket to the server (docs/PROTOCOL.md): connects, reconnects
// with jittered exponential backoff, gives up on an attempt that never
// opens, and reconnects at once on "retry now" or when the browser comes
// back online. What to say on open and what a frame means are the app's.

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;
// An attempt still not open after this long is given up and retried: a
// browser may leave a socket connecting for minutes (or, when a policy
// blocks it, closed without a close event), and the page must not wait on it.
const CONNECT_TIMEOUT_MS = 10000;

export class Conn {
  /**
   * `url()`: where to connect; `onOpen(conn)`: the socket is open (send
   * `hello`); `onFrame(msg)`: a parsed frame; `onLost(code, reason)`: the
   * socket is gone (return false to not reconnect); `onState(state,
   * retryAt)`: 'connecting', 'open', 'reconnecting' or 'stopped'.
   */
  constructor({ url, onOpen, onFrame, onLost, onState }) {
    Object.assign(this, { url, onOpen, onFrame, onLost, onState });
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = false;
    this.retryAt = 0;
    // Back on the network: don't wait out the backoff. An attempt made
    // while offline is stale: drop it and try now.
    window.addEventListener('online', () => {
      if (this.attempt === 0) return; // connected, or the first attempt is under way
      this.retryNow();
    });
  }

  get open() { return !!this.ws && this.ws.readyState === WebSocket.OPEN; }

  send(frame) {
    if (this.open) { this.ws.send(JSON.stringify(frame)); return true; }
    return false;
  }

  connect() {
    clearTimeout(this.timer);
    if (this.stopped) return;
    this.onState(this.attempt === 0 ? 'connecting' : 'reconnecting', 0);
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.onopen = () => this.onOpen(this);
    ws.onmessage = (e) => {
      let m;
      try { m = JSON.parse(e.data); } catch { return; }
      if (this.ws === ws && m && typeof m.type === 'string') this.onFrame(m);
    };
    ws.onclose = (e) => this.lost(ws, e.code, e.reason);
    const watchdog = setTimeout(() => {
      if (this.ws === ws && ws.readyState !== WebSocket.OPEN) this.abandon(ws, `not open after ${CONNECT_TIMEOUT_MS} ms`);
    }, CONNECT_TIMEOUT_MS);
    ws.addEventListener('open', () => clearTimeout(watchdog));
  }

  /** The server welcomed us: the next loss starts the backoff afresh. */
  welcomed() {
    this.attempt = 0;
    this.onState('open', 0);
  }

  /** Reconnects now, whatever the backoff says ("retry now", back online). */
  retryNow() {
    if (this.stopped || this.open) return; // open: the welcome is on its way
    if (this.ws) this.abandon(this.ws, 'retried now');
    this.connect();
  }

  /** Gives up for good (the page needs the user first). */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) { const ws = this.ws; this.ws = null; ws.onclose = null; try { ws.close(); } catch { /* closed */ } }
    this.onState('stopped', 0);
  }

  /** Starts again after `stop` (a token was given, say). */
  restart() {
    this.stopped = false;
    this.attempt = 0;
    this.connect();
  }

  /** Gives up on an attempt that has not opened, as if it had failed. */
  abandon(ws, why) {
    ws.onclose = null;
    try { ws.close(); } catch { /* already closed */ }
    this.lost(ws, 1006, why);
  }

  lost(ws, code, reason) {
    if (this.ws !== ws) return;
    console.info(`chat: connection closed (${code}${reason ? ': ' + reason : ''})`);
    this.ws = null;
    if (this.onLost(code, reason) === false) { this.stop(); return; }
    if (this.stopped) return;
    this.attempt += 1;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (this.attempt - 1));
    const wait = base * (0.5 + Math.random());
    this.retryAt = Date.now() + wait;
    this.timer = setTimeout(() => this.connect(), wait);
    this.onState('reconnecting', this.retryAt);
  }
}
