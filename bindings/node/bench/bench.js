'use strict';
// Benchmark: ns per tryAcquire through the binding on a private tracker whose
// model has all four windows (limits too high to be reached).
// Next to it, a refusal: tryAcquire on bench/spent, whose day's one request
// is used, so every call is refused.
// The three are timed in interleaved rounds; each figure is the median.
// Prints: BENCH node try_acquire_ns=<float> floor_ns=<float> refused_ns=<float>
// The floor is koffi's own cost: rt_version_number(), a C function that only
// returns a constant, declared on the library the binding loaded and called
// the same way (koffi's synchronous call), in the same kind of loop.
const rt = require('..');
const loader = require('../lib/loader');

const MODEL = 'bench/m';
const SPENT = 'bench/spent';
const N = Number(process.env.BENCH_ITERATIONS || 1_000_000);

const t = rt.open({
  builtin_tiers: false,
  limits: {
    [MODEL]: { rpm: 1000000000, tpm: 1000000000000, rpd: 1000000000000, tpd: 1000000000000 },
    [SPENT]: { rpm: 1000000000, tpm: 1000000000000, rpd: 1, tpd: 1000000000000 },
  },
});

function run(n) {
  let admitted = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) if (t.tryAcquire(MODEL, 1).ok) admitted++;
  const ns = Number(process.hrtime.bigint() - start);
  if (admitted !== n) throw new Error(`only ${admitted} of ${n} admitted`);
  return ns / n;
}

function refused(n) {
  let refusedCalls = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) if (!t.tryAcquire(SPENT, 1).ok) refusedCalls++;
  const ns = Number(process.hrtime.bigint() - start);
  if (refusedCalls !== n) throw new Error(`only ${refusedCalls} of ${n} refused`);
  return ns / n;
}

const versionNumber = loader.load().lib.func('int rt_version_number(void)');

function floor(n) {
  let sum = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) sum += versionNumber() > 0 ? 1 : 0;
  const ns = Number(process.hrtime.bigint() - start);
  if (sum !== n) throw new Error('rt_version_number() <= 0');
  return ns / n;
}

// Interleaved rounds, so that the three share the machine's drifts; each
// figure is the median of the rounds (their range is printed too).
const ROUNDS = 9;
const perRound = Math.max(1, Math.floor(N / ROUNDS));
run(Math.min(N, 50_000)); // warm up the JIT
floor(Math.min(N, 50_000));
t.reset();
t.tryAcquire(SPENT, 1); // the day's one request
refused(Math.min(N, 50_000));
const rounds = { admitted: [], refused: [], floor: [] };
for (let r = 0; r < ROUNDS; r++) {
  rounds.admitted.push(run(perRound));
  rounds.refused.push(refused(perRound));
  rounds.floor.push(floor(perRound));
}
t.close();
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const desc = Object.entries(rounds)
  .map(([k, v]) => `${k} ${median(v).toFixed(1)} (${Math.min(...v).toFixed(1)}-${Math.max(...v).toFixed(1)})`)
  .join(', ');
// Ratios within each round (the round's call over the round's floor or
// admission), their median and range: what the machine's drifts move least.
const ratios = (num, den) => rounds[num].map((x, i) => x / rounds[den][i]);
const ratioDesc = (v) => `${median(v).toFixed(2)} (${Math.min(...v).toFixed(2)}-${Math.max(...v).toFixed(2)})`;
console.log(`library ${rt.version()}, ${perRound} calls x ${ROUNDS} interleaved rounds, median (range) ns: ${desc}`);
console.log(
  `per round: admitted / floor ${ratioDesc(ratios('admitted', 'floor'))}, ` +
    `refused / admitted ${ratioDesc(ratios('refused', 'admitted'))}`,
);
console.log(
  `BENCH node try_acquire_ns=${median(rounds.admitted).toFixed(1)} floor_ns=${median(rounds.floor).toFixed(1)} ` +
    `refused_ns=${median(rounds.refused).toFixed(1)}`,
);
