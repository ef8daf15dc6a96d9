'use strict';
/**
 * A TCP proxy that delays every chunk by DELAY_MS in each direction (so a
 * round trip gains 2 * DELAY_MS), to bench redis:// as over a network rather
 * than loopback. Run as a child process by bench/async-redis.js:
 *   node delay-proxy.js UPSTREAM_PORT DELAY_MS   (prints the listening port)
 */
const net = require('node:net');

const [upstreamPort, delayMs] = process.argv.slice(2).map(Number);

function pipeDelayed(from, to) {
  from.on('data', (chunk) => setTimeout(() => to.write(chunk), delayMs));
  from.on('end', () => setTimeout(() => to.end(), delayMs));
  from.on('error', () => to.destroy());
}

const server = net.createServer((client) => {
  client.setNoDelay(true);
  const upstream = net.connect(upstreamPort, '127.0.0.1');
  upstream.setNoDelay(true);
  pipeDelayed(client, upstream);
  pipeDelayed(upstream, client);
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`));
