'use strict';
// worker_threads racing tryAcquire. Each worker loads the binding itself;
// the library is mapped once per process, so all of them share the GLOBAL
// tracker (a private tracker's handle is not shared across workers). It is
// configured with a small custom window per model ("conc/*"): exactly `LIMIT`
// must be admitted for each of MODELS models (many last-slot races per run).
const { isMainThread, Worker, workerData, parentPort } = require('node:worker_threads');

const MODELS = 300;
const LIMIT = 5;
const WORKERS = 4;
const ATTEMPTS = 4; // per worker and model: 16 attempts for 5 slots
const model = (k) => `conc/m${k}`;

if (!isMainThread) {
  // Worker: wait for the start signal, then race.
  const rt = require('..');
  const g = rt.globalTracker();
  const flag = new Int32Array(workerData.start);
  Atomics.add(flag, 1, 1); // ready
  Atomics.wait(flag, 0, 0);
  let admitted = 0;
  let limited = 0;
  for (let k = 0; k < MODELS; k++) {
    for (let i = 0; i < ATTEMPTS; i++) {
      const r = g.tryAcquire(model(k), 1);
      if (r.ok) admitted++;
      else if (r.retryAfterMs > 0) limited++;
    }
  }
  parentPort.postMessage({ admitted, limited });
} else {
  const test = require('node:test');
  const assert = require('node:assert/strict');
  const rt = require('..');

  const config = {
    builtin_tiers: false,
    limits: { 'conc/*': { windows: [{ unit: 'requests', limit: LIMIT, seconds: 30 }] } },
  };

  test.beforeEach(() => {
    rt.resetGlobal();
    rt.configureGlobal(config);
  });
  test.afterEach(() => {
    rt.resetGlobal();
    rt.configureGlobal({ builtin_tiers: true, limits: {} });
  });

  function race() {
    const start = new SharedArrayBuffer(8);
    const flag = new Int32Array(start);
    const workers = [];
    const results = [];
    for (let i = 0; i < WORKERS; i++) {
      const w = new Worker(__filename, { workerData: { start } });
      workers.push(w);
      results.push(
        new Promise((resolve, reject) => {
          w.once('message', resolve);
          w.once('error', reject);
          w.once('exit', (code) => code !== 0 && reject(new Error(`worker exited with ${code}`)));
        }),
      );
    }
    return { flag, workers, results };
  }

  test('workers racing tryAcquire on the global admit exactly the limit of each model', async () => {
    const { flag, results } = race();
    // Release every worker at once when all are ready.
    while (Atomics.load(flag, 1) < WORKERS) await new Promise((r) => setTimeout(r, 5));
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
    const counts = await Promise.all(results);
    const admitted = counts.reduce((s, c) => s + c.admitted, 0);
    const limited = counts.reduce((s, c) => s + c.limited, 0);
    const stats = rt.globalStats().models;
    const over = [];
    for (let k = 0; k < MODELS; k++) {
      const w = stats[model(k)].requests_per_30s;
      if (w.current !== LIMIT || w.remaining !== 0) over.push(`${model(k)}: ${w.current}`);
    }
    assert.deepEqual(over, [], 'every model must admit exactly its limit');
    assert.equal(admitted, MODELS * LIMIT, `admitted ${admitted}: ${JSON.stringify(counts)}`);
    assert.equal(limited, MODELS * (WORKERS * ATTEMPTS - LIMIT));
    // The main thread sees the same global.
    assert.equal(rt.globalTracker().tryAcquire(model(0)).ok, false);
  });
}
