'use strict';
// A racer for the "shm:NAME" backend: racers in other processes (and other
// languages) that open the same NAME share one budget, so together they are
// admitted exactly LIMIT times.
//
//   node examples/racer.js NAME MODEL LIMIT ATTEMPTS [START_FILE]
//
// Opens a private tracker on shm:NAME with LIMIT requests per hour for MODEL,
// waits until START_FILE exists (if given), calls tryAcquire(MODEL, 1)
// ATTEMPTS times and prints "admitted <N>".
const fs = require('node:fs');
const { setTimeout: sleep } = require('node:timers/promises');
const rt = require('..');

function count(text, what) {
  if (!/^\d+$/.test(text ?? '')) throw new Error(`${what} must be a non-negative integer, not ${JSON.stringify(text)}`);
  return Number(text);
}

/** Polls every millisecond until `path` exists, for at most `maxMs`. */
async function waitFor(path, maxMs) {
  const deadline = Date.now() + maxMs;
  while (!fs.existsSync(path)) {
    if (Date.now() >= deadline) throw new Error(`${path} did not appear within ${maxMs / 1000} s`);
    await sleep(1);
  }
}

async function main(args) {
  if (args.length !== 4 && args.length !== 5) {
    throw new Error('usage: racer.js NAME MODEL LIMIT ATTEMPTS [START_FILE]');
  }
  const [name, model, limitText, attemptsText, startFile] = args;
  const limit = count(limitText, 'LIMIT');
  const attempts = count(attemptsText, 'ATTEMPTS');

  const config = JSON.stringify({
    backend: `shm:${name}`,
    builtin_tiers: false,
    limits: { [model]: { windows: [{ unit: 'requests', limit, seconds: 3600 }] } },
  });
  const tracker = rt.open(config);
  try {
    if (startFile !== undefined) await waitFor(startFile, 30_000);
    let admitted = 0;
    for (let i = 0; i < attempts; i++) {
      if (tracker.tryAcquire(model, 1).ok) admitted++;
    }
    console.log(`admitted ${admitted}`);
  } finally {
    tracker.close();
  }
}

main(process.argv.slice(2)).catch((err) => {
  console.error(`racer: ${err.message}`);
  process.exitCode = 1;
});
