// A crowd for the big-room browser test: `node --experimental-websocket
// crowd.mjs URL N` opens N WebSockets to URL, each saying hello as
// mNNNN, prints "ready N" once all are welcomed, then opens one more per
// line "more" on stdin (printing "ready" with the total again). Ends when
// stdin closes. Loopback only, like every test here.
import readline from 'node:readline';

const [url, n] = process.argv.slice(2);
const sockets = [];
const open = (i) => new Promise((ok, fail) => {
  const ws = new WebSocket(url);
  sockets.push(ws);
  ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', nick: `m${String(i).padStart(4, '0')}` }));
  ws.onmessage = (e) => { if (JSON.parse(e.data).type === 'welcome') ok(); };
  ws.onerror = () => fail(new Error(`socket ${i} failed`));
});

// In batches, not 1,000 handshakes at once.
for (let i = 0; i < Number(n); i += 50) {
  await Promise.all(Array.from({ length: Math.min(50, Number(n) - i) }, (_, k) => open(i + k)));
}
console.log(`ready ${sockets.length}`);
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  if (line.trim() === 'more') { await open(sockets.length); console.log(`ready ${sockets.length}`); }
});
rl.on('close', () => process.exit(0));
