// Node `ws` peer for the load benchmarks, written the way the ws README
// shows: a WebSocketServer, a 'message' handler that sends back
// (echo), or that sends to every open client, the sender included
// (broadcast).
//
//   node ws-server.js echo --listen 127.0.0.1:9103
//   node ws-server.js broadcast --listen 127.0.0.1:9103
'use strict';

const { WebSocketServer, WebSocket } = require('ws');

const mode = process.argv[2];
const at = process.argv.indexOf('--listen');
const [host, port] = (at > 0 ? process.argv[at + 1] : '127.0.0.1:9103').split(':');
if (mode !== 'echo' && mode !== 'broadcast') {
  console.error('usage: node ws-server.js echo|broadcast --listen HOST:PORT');
  process.exit(2);
}

// perMessageDeflate is off by default in ws; left so.
const wss = new WebSocketServer({ host, port: Number(port) });

wss.on('connection', (ws) => {
  ws.on('error', console.error);
  if (mode === 'echo') {
    ws.on('message', (data, isBinary) => {
      ws.send(data, { binary: isBinary });
    });
  } else {
    ws.on('message', (data, isBinary) => {
      wss.clients.forEach((client) => {
        if (client.readyState === WebSocket.OPEN) {
          client.send(data, { binary: isBinary });
        }
      });
    });
  }
});

wss.on('listening', () => console.log(`ws ${mode} listening on ${host}:${port}`));
