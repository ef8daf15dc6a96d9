'use strict';
// Shared bits of the SDK integration tests: a private tracker with given
// per-minute limits, its per-minute window, a fake server's lifetime, and a skip for Node versions the
// SDKs do not run on.
const rt = require('../..');
const { FakeLlmServer } = require('./fake-llm-server');

/** A private tracker: only `limits` ({model: {rpm, tpm, ...}}), no built-in tier. */
function tracker(limits, extra = {}) {
  return rt.open({ builtin_tiers: false, limits, ...extra });
}

/** The model's window `name` (requests_per_minute, tokens_per_minute) in the tracker's stats. */
function win(t, model, name) {
  return t.stats().models[model][name];
}

/** Why the SDK tests cannot run on this Node.js (a string), or false. */
function sdkSkip() {
  const major = Number(process.versions.node.split('.')[0]);
  if (typeof globalThis.fetch !== 'function' || typeof globalThis.ReadableStream !== 'function') {
    return `Node.js ${process.version} has no global fetch / ReadableStream, which the SDKs need`;
  }
  if (major < 18) return `Node.js ${process.version} is older than 18`;
  return false;
}

/** Loads a package the test needs, or a skip reason if it cannot load on this Node.js. */
function load(name) {
  try {
    return { mod: require(name), skip: false };
  } catch (err) {
    return { mod: null, skip: `${name} does not load on Node.js ${process.version}: ${err.message.split('\n')[0]}` };
  }
}

/** Runs fn(server) with a FakeLlmServer started with `serverOptions`, and closes it. */
async function withServer(serverOptions, fn) {
  const server = await new FakeLlmServer(serverOptions).start();
  try {
    await fn(server);
  } finally {
    await server.close();
  }
}

/** Runs fn and returns what it threw (or null). */
async function rejection(fn) {
  try {
    await fn();
  } catch (e) {
    return e;
  }
  return null;
}

module.exports = { tracker, win, sdkSkip, load, rejection, withServer };
