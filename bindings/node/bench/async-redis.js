'use strict';
/**
 * 1 vs 8 concurrent async callers of tryAcquireAsync on a redis:// backend,
 * in one Node.js process: throughput, and how long the event loop was ever
 * blocked (perf_hooks.monitorEventLoopDelay, 1 ms resolution: max and p99 of
 * the timer's lateness). The synchronous tryAcquire is measured alongside for
 * comparison (it blocks the loop for every round trip). Prints figures; no
 * thresholds (issue #26's target: 8 callers >= 4x 1 caller, loop never
 * blocked > 1 ms).
 *
 *   RATETRACK_LIBRARY=... node bench/async-redis.js [redis://host:port/db]
 *
 * Without a URL it starts redis-server on a free loopback port (see
 * test/helpers/redis.js) and runs twice: straight to it (loopback, a round
 * trip of some 40 us), then through bench/delay-proxy.js, which adds
 * BENCH_RTT_MS (1) to every round trip, as a network to a Redis elsewhere
 * would. UV_THREADPOOL_SIZE (the libuv pool that runs
 * koffi's async calls, 4 by default) is set to 8 unless given: with 4,
 * only 4 of 8 callers have a call in flight. BENCH_SECONDS (2) per run.
 */
process.env.UV_THREADPOOL_SIZE = process.env.UV_THREADPOOL_SIZE || '8'; // before the pool starts
const { monitorEventLoopDelay, performance } = require('node:perf_hooks');
const rt = require('..');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { startRedis } = require('../test/helpers/redis');

const SECONDS = Number(process.env.BENCH_SECONDS || 2);
const MODEL = 'bench/async';

async function run(label, callers, call) {
  const h = monitorEventLoopDelay({ resolution: 1 });
  let ops = 0;
  const end = performance.now() + SECONDS * 1000;
  h.enable();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (performance.now() < end) {
        await call();
        ops++;
      }
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  h.disable();
  const ms = (ns) => (ns / 1e6).toFixed(2);
  const perSec = ops / elapsed;
  console.log(
    `${label.padEnd(34)} ${String(Math.round(perSec)).padStart(7)} ops/s  ` +
      `mean latency ${((callers / perSec) * 1e6).toFixed(0).padStart(5)} us  ` +
      `loop delay max ${ms(h.max).padStart(6)} ms  p99 ${ms(h.percentile(99)).padStart(5)} ms`,
  );
  return perSec;
}

/** Starts bench/delay-proxy.js in front of `port`; resolves to {port, stop()}. */
function delayProxy(port, rttMs) {
  const child = spawn(process.execPath, [path.join(__dirname, 'delay-proxy.js'), String(port), String(rttMs / 2)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.stdout.once('data', (d) => resolve({ port: Number(String(d).trim()), stop: () => child.kill() }));
  });
}

async function main() {
  const given = process.argv[2];
  if (given) return bench(given);
  const redis = await startRedis();
  const rtt = Number(process.env.BENCH_RTT_MS || 1);
  let proxy = null;
  try {
    await bench(redis.url, 'loopback');
    proxy = await delayProxy(redis.port, rtt);
    await bench(`redis://127.0.0.1:${proxy.port}/0?timeout_ms=1000`, `+${rtt} ms per round trip (delay proxy)`);
  } finally {
    if (proxy) proxy.stop();
    await redis.stop();
  }
}

async function bench(url, what = '') {
  const sep = url.includes('?') ? '&' : '?';
  const t = rt.open({
    builtin_tiers: false,
    backend: `${url}${sep}prefix=bench-async-${process.pid}`,
    limits: { [MODEL]: { rpm: 1e12, tpm: 1e15 } },
  });
  try {
    console.log(
      `\nnode ${process.version}, libratetrack ${rt.version()}, ${url.replace(/\/\/[^@]*@/, '//***@')} ${what}, ` +
        `UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE}, ${SECONDS} s per run`,
    );
    // The machine's own noise: the loop doing nothing but waiting on a timer.
    await run('idle loop (baseline)', 1, () => new Promise((r) => setTimeout(r, 5)));
    await run('warm-up (8 async callers)', 8, () => t.tryAcquireAsync(MODEL, 1));
    const one = await run('1 async caller  (tryAcquireAsync)', 1, () => t.tryAcquireAsync(MODEL, 1));
    const eight = await run('8 async callers (tryAcquireAsync)', 8, () => t.tryAcquireAsync(MODEL, 1));
    // Sync calls, yielding to the loop after each (as a caller doing I/O would): each call blocks it.
    const yieldLoop = () => new Promise((r) => setImmediate(r));
    await run('1 caller  (sync tryAcquire)', 1, () => (t.tryAcquire(MODEL, 1), yieldLoop()));
    await run('8 callers (sync tryAcquire)', 8, () => (t.tryAcquire(MODEL, 1), yieldLoop()));
    console.log(`8 async callers / 1 async caller: ${(eight / one).toFixed(2)}x`);
  } finally {
    t.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
