// A Socket.IO 4.8 chat server, as chatbench's `socketio` profile expects
// it (docs/targets.md): `join` (room name, acknowledged) puts a socket in a
// room; `chat` (any object) is sent to everyone in the sender's room, the
// sender included. Engine.IO serves polling and WebSocket, with upgrades.
// The heartbeat is Socket.IO's default (a ping every 25 s, answered
// within 20 s) unless --ping-interval-ms and --ping-timeout-ms set it.
'use strict';
const { Server } = require('socket.io');
const { parseArgs, httpServer, notFound, listen } = require('../common.js');

const opts = parseArgs(process.argv.slice(2), {
  'ping-interval-ms': 25000,
  'ping-timeout-ms': 20000,
});
const server = httpServer((req, res) => notFound(res));
const io = new Server(server, {
  serveClient: false,
  pingInterval: opts['ping-interval-ms'],
  pingTimeout: opts['ping-timeout-ms'],
});

io.on('connection', (socket) => {
  socket.on('join', (room, ack) => {
    if (typeof room !== 'string' || room.length === 0 || room.length > 64) {
      if (typeof ack === 'function') ack({ error: 'room must be a name of 1 to 64 characters' });
      return;
    }
    if (socket.data.room) socket.leave(socket.data.room);
    socket.join(room);
    socket.data.room = room;
    if (typeof ack === 'function') ack('ok');
  });
  socket.on('chat', (message) => {
    if (socket.data.room && message !== null && typeof message === 'object') {
      io.to(socket.data.room).emit('chat', message);
    }
  });
});

listen(server, opts, () => io.close());
