'use strict';
// libratetrack's tryAcquire next to `limiter` and `rate-limiter-flexible`
// (RateLimiterMemory) in one process: interleaved rounds, each case timed in
// every round. Run by scripts/bench-peers.sh; figures, not a test.
//
// The limits of a real model: rpm 500, tpm 200,000, rpd 10,000,
// tpd 2,000,000; 100 tokens a decision. Every batch starts from fresh state
// (libratetrack: reset(); a peer: new limiters), outside the timing.
// Admitting: 400 decisions, all admitted (they fit every limit). Refusing:
// the limit spent first (untimed), then 400 decisions, all refused.
// rate-limiter-flexible's calls return promises: each decision is awaited,
// as a user would.
const rt = require('../..');
const { RateLimiter } = require('limiter');
const { RateLimiterMemory } = require('rate-limiter-flexible');

const MODEL = 'peers/m';
const TOKENS = 100;
const K = 400;
const ROUNDS = Number(process.env.PEERS_ROUNDS || 11);
const BATCHES = Number(process.env.PEERS_BATCHES || 25);
const MIN = 60, DAY = 86400;
// [limit, seconds, cost is the tokens?]
const WINDOWS = [[500, MIN, false], [200000, MIN, true], [10000, DAY, false], [2000000, DAY, true]];

const t = rt.open({
  builtin_tiers: false,
  limits: { [MODEL]: { rpm: 500, tpm: 200000, rpd: 10000, tpd: 2000000 } },
});

// limiter: a token bucket plus a count per interval. Composed as a user
// would: look at each (getWaitTime, which covers both), then consume from
// each (tryRemoveTokens). Not atomic across windows.
const interval = (s) => (s === MIN ? 'minute' : 'day');
function limiterFour() {
  return WINDOWS.map(([limit, s, weighted]) => ({
    l: new RateLimiter({ tokensPerInterval: limit, interval: interval(s) }), weighted,
  }));
}
function limiterDecide(four, n) {
  for (const { l, weighted } of four) if (l.getWaitTime(weighted ? n : 1) > 0) return false;
  for (const { l, weighted } of four) l.tryRemoveTokens(weighted ? n : 1);
  return true;
}

// rate-limiter-flexible: fixed windows in memory. Composed the same way:
// get() each, then consume() each.
function flexFour() {
  return WINDOWS.map(([limit, s, weighted]) => ({
    l: new RateLimiterMemory({ points: limit, duration: s }), limit, weighted,
  }));
}
async function flexDecide(four, n) {
  for (const { l, limit, weighted } of four) {
    const res = await l.get('k');
    if (res && res.consumedPoints + (weighted ? n : 1) > limit) return false;
  }
  for (const { l, weighted } of four) await l.consume('k', weighted ? n : 1);
  return true;
}
async function flexOne(l, n) {
  try {
    await l.consume('k', n);
    return true;
  } catch (e) {
    if (e instanceof Error) throw e;
    return false; // a RateLimiterRes: refused
  }
}

const CASES = [
  { name: 'libratetrack tryAcquire (4 windows)',
    fresh: () => { t.reset(); return null; }, decide: () => t.tryAcquire(MODEL, TOKENS).ok },
  { name: 'limiter, 4 limiters composed',
    fresh: limiterFour, decide: (s) => limiterDecide(s, TOKENS) },
  { name: 'limiter, 1 limiter (tpm only)',
    fresh: () => new RateLimiter({ tokensPerInterval: 200000, interval: 'minute' }),
    decide: (s) => s.tryRemoveTokens(TOKENS) },
  { name: 'rate-limiter-flexible, 4 limiters composed', async: true,
    fresh: flexFour, decide: (s) => flexDecide(s, TOKENS) },
  { name: 'rate-limiter-flexible, 1 limiter (tpm only)', async: true,
    fresh: () => new RateLimiterMemory({ points: 200000, duration: MIN }),
    decide: (s) => flexOne(s, TOKENS) },
];

async function batch(c, refusing) {
  const s = c.fresh();
  if (refusing) {
    for (let spent = 0; c.async ? await c.decide(s) : c.decide(s); spent++) {
      if (spent > 100000) throw new Error(`${c.name}: never refused`);
    }
  }
  let admitted = 0;
  const start = process.hrtime.bigint();
  if (c.async) {
    for (let i = 0; i < K; i++) if (await c.decide(s)) admitted++;
  } else {
    for (let i = 0; i < K; i++) if (c.decide(s)) admitted++;
  }
  const ns = Number(process.hrtime.bigint() - start);
  if (admitted !== (refusing ? 0 : K)) throw new Error(`${c.name}: ${admitted} of ${K} admitted`);
  return ns;
}

async function main() {
  const ns = [CASES.map(() => []), CASES.map(() => [])];
  for (let round = 0; round <= ROUNDS; round++) {
    for (const refusing of [false, true]) {
      for (let i = 0; i < CASES.length; i++) {
        const c = (i + round) % CASES.length;
        let total = 0;
        for (let b = 0; b < BATCHES; b++) total += await batch(CASES[c], refusing);
        if (round > 0) ns[+refusing][c].push(total / (BATCHES * K)); // round 0 warms up
      }
    }
  }
  t.close();
  console.log(`ROUNDS ${ROUNDS} x ${BATCHES} batches of ${K} decisions per case`);
  ['admitting', 'refusing'].forEach((kind, r) => CASES.forEach((c, i) => {
    console.log(`CASE\tnode\t${kind}\t${c.name}\t${ns[r][i].map((x) => x.toFixed(2)).join(',')}`);
  }));
}

main().catch((e) => { console.error(e); process.exit(1); });
