// The Socket.IO tutorial's chat, as the load benchmarks' Socket.IO peer:
// every 'chat message' is sent to everyone with io.emit. The tutorial
// serves its page through express; no page is needed here, so a plain
// node:http server carries the Socket.IO server instead.
//
//   node socketio-chat.js --listen 127.0.0.1:9105
'use strict';

const { createServer } = require('node:http');
const { Server } = require('socket.io');

const at = process.argv.indexOf('--listen');
const [host, port] = (at > 0 ? process.argv[at + 1] : '127.0.0.1:9105').split(':');

const server = createServer();
const io = new Server(server);

io.on('connection', (socket) => {
  socket.on('chat message', (msg) => {
    io.emit('chat message', msg);
  });
});

server.listen(Number(port), host, () => {
  console.log(`socket.io chat listening on ${host}:${port}`);
});
