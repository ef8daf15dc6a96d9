'use strict';
// A redis-server on a free loopback port, without persistence, for the
// redis:// tests and the benchmark (Debian's /usr/bin/redis-server, or
// $RATETRACK_REDIS_SERVER). Readiness is a PING over a raw socket: no Redis
// client library.
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');

const REDIS_SERVER = process.env.RATETRACK_REDIS_SERVER || '/usr/bin/redis-server';

/** Why Redis tests cannot run (a string), or false. CI / RATETRACK_REQUIRE_REDIS=1 make a missing server a failure. */
function redisSkip() {
  try {
    fs.accessSync(REDIS_SERVER, fs.constants.X_OK);
    return false;
  } catch {
    const why = `redis-server not found (${REDIS_SERVER}); install redis-server (scripts/install-deps.sh)`;
    if (process.env.CI || process.env.RATETRACK_REQUIRE_REDIS === '1') throw new Error(`${why} [required: CI or RATETRACK_REQUIRE_REDIS=1]`);
    return why;
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function ping(port) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let reply = '';
    sock.setTimeout(1000, () => sock.destroy());
    sock.on('connect', () => sock.write('*1\r\n$4\r\nPING\r\n'));
    sock.on('data', (d) => {
      reply += d;
      if (reply.includes('\r\n')) sock.end();
    });
    sock.on('close', () => resolve(reply.startsWith('+PONG')));
    sock.on('error', () => {});
  });
}

/** Starts redis-server; resolves to {url, port, stop()} once it answers PING. */
async function startRedis() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ratetrack-redis-'));
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const proc = spawn(
      REDIS_SERVER,
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', path.join(dir, 'redis.log')],
      { stdio: 'ignore' },
    );
    let exited = false;
    proc.once('exit', () => (exited = true));
    // Wait for PING, as long as the process lives (a taken port makes it exit).
    while (!exited && !(await ping(port))) await new Promise((r) => setTimeout(r, 50));
    if (!exited) {
      return {
        port,
        url: `redis://127.0.0.1:${port}/0`,
        async stop() {
          if (!exited) {
            const gone = new Promise((r) => proc.once('exit', r));
            proc.kill('SIGTERM');
            await gone;
          }
          fs.rmSync(dir, { recursive: true, force: true });
        },
      };
    }
    if (attempt >= 3) throw new Error(`redis-server did not start (see ${dir}/redis.log)`);
  }
}

module.exports = { redisSkip, startRedis, REDIS_SERVER };
