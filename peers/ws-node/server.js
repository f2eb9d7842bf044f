// A chat server on Node.js's `ws` package, the smallest one people write:
// a WebSocket at /chat?room=NAME joins that room, and every text message
// (JSON) is sent to everyone in it, the sender included. chatbench drives
// it with the `generic` profile of scenarios/stacks.toml.
'use strict';
const { WebSocketServer } = require('ws');
const { parseArgs, httpServer, notFound, listen } = require('../common.js');

const opts = parseArgs(process.argv.slice(2));
const server = httpServer((req, res) => notFound(res));
const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
const rooms = new Map();

server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://localhost');
  const room = url.searchParams.get('room');
  if (url.pathname !== '/chat' || !room || room.length > 64) {
    socket.end('HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 21\r\n\r\n{"error":"not found"}');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => join(ws, room));
});

function join(ws, room) {
  let members = rooms.get(room);
  if (!members) rooms.set(room, (members = new Set()));
  members.add(ws);
  ws.on('message', (data, isBinary) => {
    if (isBinary) return ws.close(1003, 'text messages only');
    try {
      JSON.parse(data);
    } catch {
      return ws.close(1007, 'messages are JSON');
    }
    // One buffer, sent as text to every member.
    for (const m of members) m.send(data, { binary: false });
  });
  ws.on('close', () => {
    members.delete(ws);
    if (members.size === 0) rooms.delete(room);
  });
  ws.on('error', () => {});
}

listen(server, opts, () => wss.close());
