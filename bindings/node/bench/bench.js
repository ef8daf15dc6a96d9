'use strict';
// Benchmark: ns per tryAcquire through the binding on a private tracker whose
// model has all four windows (limits too high to be reached).
// Prints: BENCH node try_acquire_ns=<float>
const rt = require('..');

const MODEL = 'bench/m';
const N = Number(process.env.BENCH_ITERATIONS || 1_000_000);

const t = rt.open({
  builtin_tiers: false,
  limits: { [MODEL]: { rpm: 1000000000, tpm: 1000000000000, rpd: 1000000000000, tpd: 1000000000000 } },
});

function run(n) {
  let admitted = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) if (t.tryAcquire(MODEL, 1).ok) admitted++;
  const ns = Number(process.hrtime.bigint() - start);
  if (admitted !== n) throw new Error(`only ${admitted} of ${n} admitted`);
  return ns / n;
}

run(Math.min(N, 50_000)); // warm up the JIT
t.reset();
const ns = run(N);
t.close();
console.log(`library ${rt.version()}, ${N} iterations`);
console.log(`BENCH node try_acquire_ns=${ns.toFixed(1)}`);
