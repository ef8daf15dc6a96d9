'use strict';
// The install command of the README, as a user runs it, with the npm of the
// toolchain under test (run-tests.sh sets NPM; Node 18 + npm 9 and Node 20 +
// npm 11 in CI): in a fresh `npm init -y` application, from a copy of the
// checkout (no node_modules in it, as after `git clone`) and from a tarball
// made by `npm pack`. After it, and after each later npm command a user
// runs in the application (`npm install left-pad`, a plain `npm install`,
// `npm ci` from the lockfile alone), a program requires the binding and uses
// the library. From the checkout, the examples run too.
//
// It needs the npm registry; RATETRACK_SKIP_INSTALL_TESTS=1 skips it.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const BINDING = path.resolve(__dirname, '..');
const PKG = require('../package.json');
const skip = process.env.RATETRACK_SKIP_INSTALL_TESTS === '1' && 'RATETRACK_SKIP_INSTALL_TESTS=1';

/** The sh block after `<!-- MARKER -->` in a Markdown file, or null. */
function markedBlock(file, marker) {
  if (!fs.existsSync(file)) return null;
  const m = fs.readFileSync(file, 'utf8').match(new RegExp(`<!-- ${marker} -->\\n\`\`\`sh\\n([^]*?)\`\`\``));
  return m ? m[1].trim() : null;
}

const COMMAND = markedBlock(path.join(BINDING, 'README.md'), 'install-command');
const TOP_COMMAND = markedBlock(path.join(BINDING, '..', '..', 'README.md'), 'newcomer:node:install');

test('the READMEs give one install command, with the koffi version of package.json', () => {
  assert.ok(COMMAND, 'README.md has no <!-- install-command --> block');
  assert.match(COMMAND, /^npm install koffi@(\S+) \/path\/to\/libratetrack\/bindings\/node$/);
  assert.equal(COMMAND.match(/koffi@(\S+)/)[1], PKG.dependencies.koffi, 'the command pins another koffi than package.json');
  if (TOP_COMMAND !== null) assert.equal(TOP_COMMAND, COMMAND, 'the top-level README gives another command');
});

// The node and npm under test come first on PATH, as for a user who has them.
const nodeDir = path.dirname(process.execPath);
const npm = process.env.NPM || (fs.existsSync(path.join(nodeDir, 'npm')) ? path.join(nodeDir, 'npm') : 'npm');
const binDirs = [nodeDir, ...(npm.includes('/') ? [path.dirname(npm)] : [])];
const env = {
  ...process.env,
  PATH: [...binDirs, process.env.PATH].join(path.delimiter),
  npm_config_update_notifier: 'false',
  npm_config_fund: 'false',
  npm_config_audit: 'false',
};
delete env.NODE_OPTIONS; // node --test passes options meant for itself

/** Runs a shell command in `cwd`; fails the test with its output if it fails. */
function sh(cwd, command) {
  const r = spawnSync('bash', ['-euo', 'pipefail', '-c', command], { cwd, env, encoding: 'utf8', timeout: 240_000 });
  const output = `${r.stdout}${r.stderr}`;
  assert.equal(r.status, 0, `\`${command}\` in ${cwd} failed (${r.status ?? r.signal}):\n${output}`);
  return output;
}

const PROGRAM = `
const rt = require('ratetrack');
const t = rt.open({ builtin_tiers: false, limits: { 'acme/m': { rpm: 10 } } });
const { grant } = t.tryAcquireGrant('acme/m', 100);
t.settle(grant, 80);
console.log('installed ok', rt.version(), t.stats().models['acme/m'].tokens_per_minute.current);
t.close();
`;

/** A copy of the checkout's binding as `git clone` gives it: no node_modules, no tarballs. */
function freshCheckout(root) {
  const dest = path.join(root, 'libratetrack', 'bindings', 'node');
  fs.cpSync(BINDING, dest, {
    recursive: true,
    filter: (src) => !/(^|\/)(node_modules|[^/]*\.tgz)$/.test(path.relative(BINDING, src)),
  });
  return dest;
}

/** Installs with the README command into a fresh app, then checks it through later npm commands. */
function checkInstall(t, root, source, { examples }) {
  const app = path.join(root, 'app');
  fs.mkdirSync(app);
  sh(app, `${JSON.stringify(npm)} init -y`);
  sh(app, COMMAND.replace('/path/to/libratetrack/bindings/node', source));
  const installed = path.join(app, 'node_modules', 'ratetrack');
  const linked = fs.lstatSync(installed).isSymbolicLink();
  t.diagnostic(`npm ${sh(app, `${JSON.stringify(npm)} --version`).trim()} ${linked ? 'linked' : 'copied'} it`);
  if (linked) {
    // The case the README's command is for: koffi comes from the app.
    assert.ok(!fs.existsSync(path.join(fs.realpathSync(installed), 'node_modules')), 'the checkout has a node_modules');
  }
  fs.writeFileSync(path.join(app, 'app.js'), PROGRAM);
  const run = (after) => {
    const out = sh(app, 'node app.js');
    assert.match(out, /^installed ok \d+\.\d+\.\d+ 80$/m, `after ${after}: ${out}`);
  };
  run('the install command');
  sh(app, `${JSON.stringify(npm)} install left-pad`);
  run('npm install left-pad');
  sh(app, `${JSON.stringify(npm)} install`);
  run('a plain npm install');
  fs.rmSync(path.join(app, 'node_modules'), { recursive: true });
  sh(app, `${JSON.stringify(npm)} ci`);
  run('npm ci');
  if (examples) {
    const out = sh(app, `node ${JSON.stringify(path.join(examples, 'agent.js'))}`);
    assert.match(out, /tier tier1, backend memory/);
  }
}

test('with no koffi beside the binding nor in the application, require says how to install it', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ratetrack-install-'));
  try {
    const checkout = freshCheckout(root);
    const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(checkout)})`], {
      cwd: root,
      env,
      encoding: 'utf8',
    });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /cannot find the module 'koffi'.*npm install koffi@3\.3\.4 \/path\/to\/libratetrack\/bindings\/node/);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('install command: from a checkout; examples run from the app', { skip, timeout: 600_000 }, (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ratetrack-install-'));
  try {
    const checkout = freshCheckout(root);
    checkInstall(t, root, checkout, { examples: path.join(checkout, 'examples') });
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('install command: from a tarball made by npm pack', { skip, timeout: 600_000 }, (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ratetrack-install-'));
  try {
    const checkout = freshCheckout(root);
    const out = sh(checkout, `${JSON.stringify(npm)} pack --silent --pack-destination ${JSON.stringify(root)}`);
    const tarball = path.join(root, out.trim().split('\n').pop());
    assert.ok(fs.existsSync(tarball), `npm pack made no ${tarball}`);
    checkInstall(t, root, tarball, { examples: null });
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});
