// What both example servers share: chatbench's spawn flags, /healthz, the
// "listening on" line chatbench reads, and a clean stop on SIGTERM.
'use strict';
const http = require('node:http');

// `--listen HOST:PORT` and `--max-connections N`, as chatbench passes them
// to every server it spawns, and the server's own numeric flags in `extra`
// (name to default); anything else is refused.
function parseArgs(argv, extra = {}) {
  const opts = { host: '127.0.0.1', port: 0, maxConnections: 0, ...extra };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) fail(`${flag} needs a value`);
    if (flag === '--listen') {
      const at = value.lastIndexOf(':');
      if (at < 0) fail(`--listen wants HOST:PORT, got ${value}`);
      opts.host = value.slice(0, at).replace(/^\[|\]$/g, '');
      opts.port = Number(value.slice(at + 1));
    } else if (flag === '--max-connections') {
      opts.maxConnections = Number(value);
    } else if (flag.slice(2) in extra && Number.isFinite(Number(value))) {
      opts[flag.slice(2)] = Number(value);
    } else {
      fail(`unknown flag ${flag}`);
    }
  }
  return opts;
}

function fail(why) {
  process.stderr.write(`${why}\n`);
  process.exit(2);
}

// An HTTP server answering /healthz; `other` gets every other request.
function httpServer(other) {
  return http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
      return;
    }
    other(req, res);
  });
}

function notFound(res) {
  res.writeHead(404, { 'content-type': 'application/json' });
  res.end('{"error":"not found"}');
}

// Listens, then prints the line chatbench waits for.
function listen(server, opts, close) {
  if (opts.maxConnections > 0) server.maxConnections = opts.maxConnections;
  server.listen(opts.port, opts.host, () => {
    const a = server.address();
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    process.stdout.write(`listening on http://${host}:${a.port}\n`);
  });
  process.on('SIGTERM', () => {
    close();
    process.exit(0);
  });
}

module.exports = { parseArgs, httpServer, notFound, listen };
