'use strict';
// An example agent: a main agent loop and two tools share the GLOBAL tracker
// (one per process) for openai/gpt-4o-mini. The LLM calls are simulated (no
// network). Run: RATETRACK_LIBRARY=/path/to/libratetrack.so.0 node examples/agent.js
const rt = require('..');

const MODEL = 'openai/gpt-4o-mini';

/** Pretends to call the model; returns the tokens really used. */
async function fakeLlmCall(prompt, maxTokens) {
  await new Promise((r) => setTimeout(r, 2));
  return Math.min(maxTokens, prompt.length + 40 + Math.floor(Math.random() * 100));
}

/** Asks the model through the shared global tracker: acquire, call, settle. */
async function ask(who, prompt, maxTokens = 256) {
  const tracker = rt.globalTracker(); // the same global for every caller
  const estimate = prompt.length + maxTokens;
  const grant = await tracker.acquire(MODEL, estimate, { timeoutMs: 2000 });
  if (!grant) {
    console.log(`${who}: rate limited, giving up on "${prompt}"`);
    return null;
  }
  const used = await fakeLlmCall(prompt, maxTokens);
  tracker.settle(grant, used); // book the real count instead of the estimate
  return used;
}

async function searchTool(query) {
  return ask('search-tool', `summarise the search results for ${query}`);
}

async function codeTool(task) {
  return ask('code-tool', `write code for ${task}`, 512);
}

async function main() {
  const agent = rt.globalTracker('tier1');
  for (let step = 1; step <= 5; step++) {
    await ask('agent', `plan step ${step}`);
    await Promise.all([searchTool(`topic ${step}`), codeTool(`feature ${step}`)]);
  }
  // A quick check without recording anything.
  console.log('can make another 1k-token call now:', agent.canMake(MODEL, 1000));
  const stats = rt.globalStats();
  const w = stats.models[MODEL];
  console.log(`library ${rt.version()}, tier ${stats.tier}, backend ${stats.backend}; ${MODEL} usage:`);
  for (const [name, win] of Object.entries(w)) {
    const limit = win.limit === null ? 'unlimited' : `${win.limit} (${win.usage_percent}%)`;
    console.log(`  ${name.padEnd(20)} ${String(win.current).padStart(6)} / ${limit}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
