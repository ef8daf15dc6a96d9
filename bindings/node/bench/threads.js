'use strict';
// The thread rows of scripts/bench.sh: tryAcquire admitted and refused from
// 1, 2 and 4 worker threads at once, on one model and on a model each.
// A "thread" is a worker_threads Worker: each loads the binding itself (its
// own module instance and koffi functions) over the process's one copy of
// the library, so all of them call the one global tracker (a private
// tracker's handle is not shared across workers), as bench_core's threads
// share one tracker in C. The global is configured here with bench/m0..m3
// (limits never reached) and bench/full0..full3 (a day of one request, used
// before the rounds: every call is refused).
// Every case runs once in each of 11 rounds (after a warm-up round), in an
// order that rotates every round; a case's figure in a round is the wall
// time from the workers' release to the last one's end, per call (all
// workers' calls, as bench_core's real time per iteration). A row gives the
// medians of its rounds and the median and range of the per-round ratios
// refused / admitted. Figures, not a test. Prints:
//   THREAD_ROW node threads=<n> models=<one|each> admitted_ns=<x> refused_ns=<x> ratio=<x> ratio_min=<x> ratio_max=<x>
const { isMainThread, Worker, workerData } = require('node:worker_threads');
const rt = require('..');

// Control words shared with the workers.
const GEN = 0; // bumped to start a case
const ACTIVE = 1; // workers taking part (ids below it)
const SEPARATE = 2; // 1: worker i on model i, else all on model 0
const REFUSED = 3; // 1: the refused models
const PER = 4; // calls per worker
const DONE = 5; // workers finished with the case
const WRONG = 6; // calls answered otherwise than the case expects
const READY = 7; // workers started
const QUIT = 8;

if (!isMainThread) {
  const ctrl = new Int32Array(workerData.ctrl);
  const id = workerData.id;
  const g = rt.globalTracker();
  Atomics.add(ctrl, READY, 1);
  Atomics.notify(ctrl, READY);
  let seen = 0;
  for (;;) {
    Atomics.wait(ctrl, GEN, seen);
    seen = Atomics.load(ctrl, GEN);
    if (Atomics.load(ctrl, QUIT)) break;
    if (id >= ctrl[ACTIVE]) continue;
    const refused = ctrl[REFUSED] === 1;
    const model = (refused ? 'bench/full' : 'bench/m') + (ctrl[SEPARATE] ? id : 0);
    const per = ctrl[PER];
    let wrong = 0;
    for (let i = 0; i < per; i++) if (g.tryAcquire(model, 10).ok === refused) wrong++;
    Atomics.add(ctrl, WRONG, wrong);
    Atomics.add(ctrl, DONE, 1);
    Atomics.notify(ctrl, DONE);
  }
} else {
  const WORKERS = 4;
  const ROUNDS = 11;
  const CALLS = Number(process.env.BENCH_THREAD_CALLS || 200_000);
  const high = { rpm: 1e9, tpm: 1e12, rpd: 1e12, tpd: 1e12 };
  const spent = { rpm: 1e9, tpm: 1e12, rpd: 1, tpd: 1e12 };
  const limits = {};
  for (let i = 0; i < WORKERS; i++) {
    limits[`bench/m${i}`] = high;
    limits[`bench/full${i}`] = spent;
  }
  rt.resetGlobal();
  rt.configureGlobal({ builtin_tiers: false, limits });
  const g = rt.globalTracker();
  for (let i = 0; i < WORKERS; i++) {
    if (!g.tryAcquire(`bench/full${i}`, 10).ok) throw new Error(`bench/full${i}: the day's one request refused`);
  }
  const ctrl = new Int32Array(new SharedArrayBuffer(16 * 4));
  const workers = [];
  for (let id = 0; id < WORKERS; id++) {
    const w = new Worker(__filename, { workerData: { ctrl: ctrl.buffer, id } });
    w.on('error', (e) => {
      console.error(e);
      process.exit(1);
    });
    workers.push(w);
  }
  for (let r; (r = Atomics.load(ctrl, READY)) < WORKERS; ) Atomics.wait(ctrl, READY, r, 100);

  function runCase(c) {
    const per = Math.floor(CALLS / c.threads);
    ctrl[ACTIVE] = c.threads;
    ctrl[SEPARATE] = c.separate ? 1 : 0;
    ctrl[REFUSED] = c.refused ? 1 : 0;
    ctrl[PER] = per;
    Atomics.store(ctrl, DONE, 0);
    const start = process.hrtime.bigint();
    Atomics.add(ctrl, GEN, 1);
    Atomics.notify(ctrl, GEN);
    for (let d; (d = Atomics.load(ctrl, DONE)) < c.threads; ) Atomics.wait(ctrl, DONE, d);
    const ns = Number(process.hrtime.bigint() - start);
    return ns / (per * c.threads);
  }

  const cases = [];
  for (const threads of [1, 2, 4]) {
    for (const separate of [false, true]) {
      if (threads === 1 && separate) continue; // one thread: one model either way
      for (const refused of [false, true]) cases.push({ threads, separate, refused });
    }
  }
  const ns = cases.map(() => []);
  for (let round = 0; round <= ROUNDS; round++) {
    for (let k = 0; k < cases.length; k++) {
      const i = (k + round) % cases.length;
      const x = runCase(cases[i]);
      if (round > 0) ns[i].push(x); // round 0: warm-up
    }
  }
  Atomics.store(ctrl, QUIT, 1);
  Atomics.add(ctrl, GEN, 1);
  Atomics.notify(ctrl, GEN);
  const wrong = Atomics.load(ctrl, WRONG);
  if (wrong !== 0) throw new Error(`${wrong} calls answered otherwise than their case expects`);
  rt.resetGlobal();

  const medianRange = (v) => {
    const s = [...v].sort((a, b) => a - b);
    return [s[Math.floor(s.length / 2)], s[0], s[s.length - 1]];
  };
  console.log(
    `THREADS node: a thread is a worker_threads Worker with its own binding instance, all calling the process's ` +
      `global tracker; ${CALLS} calls a case in each of ${ROUNDS} interleaved rounds; ns = wall time per call, all workers' calls`,
  );
  for (let i = 0; i < cases.length; i += 2) {
    const a = ns[i];
    const r = ns[i + 1];
    const [q, lo, hi] = medianRange(a.map((x, k) => r[k] / x));
    console.log(
      `THREAD_ROW node threads=${cases[i].threads} models=${cases[i].separate ? 'each' : 'one'} ` +
        `admitted_ns=${medianRange(a)[0].toFixed(1)} refused_ns=${medianRange(r)[0].toFixed(1)} ` +
        `ratio=${q.toFixed(2)} ratio_min=${lo.toFixed(2)} ratio_max=${hi.toFixed(2)}`,
    );
  }
}
