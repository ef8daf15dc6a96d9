'use strict';
// Library lookup, version check and status-code mapping. Most of these run
// without the library; load failures run in child processes so that this
// process's (once per process) load is not affected.
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const loader = require('../lib/loader');
const { errorFromStatus, RateTrackError, Status, statusName } = require('../lib/errors');

const INDEX = path.join(__dirname, '..', 'index.js');

/** Runs `body` (which may use `rt`) in a fresh node process; returns its JSON output. */
function inChild(body, env) {
  const script = `
    const rt = require(${JSON.stringify(INDEX)});
    const out = (o) => process.stdout.write(JSON.stringify(o));
    try { ${body} } catch (e) {
      out({ threw: true, name: e.name, message: e.message, tried: e.tried,
            libraryVersion: e.libraryVersion, bindingVersion: e.bindingVersion });
    }`;
  const r = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, ...env }, encoding: 'utf8' });
  assert.equal(r.status, 0, `child failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

function systemHasLibrary() {
  try {
    return execFileSync('/sbin/ldconfig', ['-p'], { encoding: 'utf8' }).includes(loader.SONAME);
  } catch {
    return false;
  }
}

test('every status code maps to its own error kind', () => {
  const expected = {
    [-1]: 'RT_E_INVALID',
    [-2]: 'RT_E_CONFIG',
    [-3]: 'RT_E_TOO_LARGE',
    [-4]: 'RT_E_BACKEND',
    [-5]: 'RT_E_NOMEM',
    [-6]: 'RT_E_INTERNAL',
  };
  for (const [code, name] of Object.entries(expected)) {
    const e = errorFromStatus(Number(code), 'detail text');
    assert.ok(e instanceof RateTrackError);
    assert.ok(e instanceof Error);
    assert.equal(e.code, Number(code));
    assert.equal(e.status, name);
    assert.equal(Status[name], Number(code));
    assert.match(e.message, new RegExp(`^${name}: detail text$`));
  }
  assert.equal(new Set(Object.values(expected)).size, 6);
  assert.equal(errorFromStatus(-42, '').status, 'RT_E_UNKNOWN(-42)');
  assert.equal(errorFromStatus(-2, '').message, 'RT_E_CONFIG');
  assert.equal(statusName(1), 'RT_LIMITED');
});

test('version compatibility compares major.minor only', () => {
  assert.equal(loader.BINDING_VERSION, '0.1.0');
  assert.ok(loader.isCompatible(100)); // 0.1.0
  assert.ok(loader.isCompatible(109)); // 0.1.9
  assert.ok(!loader.isCompatible(200)); // 0.2.0
  assert.ok(!loader.isCompatible(99)); // 0.0.99
  assert.ok(!loader.isCompatible(10100)); // 1.1.0
  assert.ok(!loader.isCompatible(-1));
  assert.ok(loader.isCompatible(20305, '2.3.0'));
  assert.equal(loader.formatVersionNumber(10203), '1.2.3');
});

test('lookup order: explicit path, then RATETRACK_LIBRARY, then the system name', () => {
  const env = { RATETRACK_LIBRARY: '/env/lib.so' };
  assert.deepEqual(
    loader.candidates('/x/lib.so', env).map((c) => c.path),
    ['/x/lib.so', '/env/lib.so', 'libratetrack.so.0'],
  );
  assert.deepEqual(loader.candidates(undefined, {}).map((c) => c.path), ['libratetrack.so.0']);
  // openFirst stops at the first that opens, and lists every failure otherwise.
  const seen = [];
  const r = loader.openFirst(loader.candidates('/a', { RATETRACK_LIBRARY: '/b' }), (p) => {
    seen.push(p);
    if (p !== '/b') throw new Error(`no ${p}`);
    return 'LIB';
  });
  assert.deepEqual(seen, ['/a', '/b']);
  assert.equal(r.lib, 'LIB');
  assert.equal(r.source, '$RATETRACK_LIBRARY');
  assert.throws(
    () => loader.openFirst(loader.candidates('/a', { RATETRACK_LIBRARY: '/b' }), (p) => {
      throw new Error(`dlopen says no to ${p}`);
    }),
    (e) =>
      e.name === 'LoadError' &&
      e.tried.length === 3 &&
      /explicit path: \/a: dlopen says no to \/a/.test(e.message) &&
      /\$RATETRACK_LIBRARY: \/b: dlopen says no to \/b/.test(e.message) &&
      /system loader: libratetrack\.so\.0: dlopen says no to libratetrack\.so\.0/.test(e.message),
  );
});

test('a bad explicit path fails naming every place tried', () => {
  const r = inChild(`out(rt.load('/nonexistent/explicit/libratetrack.so.0'))`, {
    RATETRACK_LIBRARY: '/nonexistent/env/libratetrack.so.0',
  });
  if (systemHasLibrary()) {
    // The system loader finds an installed copy: the fallback chain worked.
    assert.equal(r.source, 'system loader');
    return;
  }
  assert.equal(r.threw, true);
  assert.equal(r.name, 'LoadError');
  assert.equal(r.tried.length, 3);
  assert.match(r.message, /explicit path: \/nonexistent\/explicit\/libratetrack\.so\.0: .*No such file/);
  assert.match(r.message, /\$RATETRACK_LIBRARY: \/nonexistent\/env\/libratetrack\.so\.0: .*No such file/);
  assert.match(r.message, /system loader: libratetrack\.so\.0: /);
});

test('the first call loads lazily, from RATETRACK_LIBRARY', { skip: !process.env.RATETRACK_LIBRARY }, () => {
  const r = inChild(`rt.globalStats(); out(rt.load())`);
  assert.equal(r.source, '$RATETRACK_LIBRARY');
  assert.equal(r.path, process.env.RATETRACK_LIBRARY);
  // An explicit path to another file after the library is loaded is refused.
  const again = inChild(`rt.load(); rt.load('/other/libratetrack.so.0'); out({})`);
  assert.equal(again.name, 'LoadError');
  assert.match(again.message, /already loaded/);
});

let cc = null;
try {
  execFileSync('cc', ['--version'], { stdio: 'ignore' });
  cc = 'cc';
} catch {}

test('a library of another major.minor is refused naming both versions', { skip: !cc && 'no C compiler' }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rt-fake-'));
  try {
    fs.writeFileSync(
      path.join(dir, 'fake.c'),
      'int rt_version_number(void) { return 20305; }\nconst char *rt_version_string(void) { return "2.3.5"; }\n',
    );
    const so = path.join(dir, 'libfake.so');
    execFileSync(cc, ['-shared', '-fPIC', '-o', so, path.join(dir, 'fake.c')]);
    const r = inChild(`out(rt.load(${JSON.stringify(so)}))`);
    assert.equal(r.threw, true);
    assert.equal(r.name, 'VersionMismatchError');
    assert.equal(r.libraryVersion, '2.3.5');
    assert.equal(r.bindingVersion, '0.1.0');
    assert.match(r.message, /2\.3\.5/);
    assert.match(r.message, /0\.1/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a 0.1 library without the _ex functions is refused at load', { skip: !cc && 'no C compiler' }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rt-old-'));
  try {
    // The right version number, but only the functions of an earlier build.
    fs.writeFileSync(
      path.join(dir, 'old.c'),
      [
        'int rt_version_number(void) { return 100; }',
        'const char *rt_version_string(void) { return "0.1.0"; }',
        'void *rt_open(const char *c) { (void)c; return 0; }',
        'void *rt_global_get(const char *t) { (void)t; return 0; }',
        'char *rt_stats_json(void *t) { (void)t; return 0; }',
        '',
      ].join('\n'),
    );
    const so = path.join(dir, 'libold.so');
    execFileSync(cc, ['-shared', '-fPIC', '-o', so, path.join(dir, 'old.c')]);
    const r = inChild(`out(rt.load(${JSON.stringify(so)}))`);
    assert.equal(r.threw, true);
    assert.equal(r.name, 'LoadError');
    assert.match(r.message, /lacks a function/);
    assert.match(r.message, /not the library version/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a bad RATETRACK_CONFIG file is RT_E_CONFIG from rt_global_get_ex', { skip: !process.env.RATETRACK_LIBRARY }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rt-conf-'));
  try {
    const file = path.join(dir, 'bad.json');
    fs.writeFileSync(file, '{"no_such_key": 1}');
    const r = inChild(`rt.globalTracker(); out({ threw: false })`, { RATETRACK_CONFIG: file, RATETRACK_TIER: '' });
    assert.equal(r.threw, true);
    assert.equal(r.name, 'RateTrackError');
    assert.match(r.message, /^RT_E_CONFIG/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a 0.1 library without the provider-truth, metrics and shm functions loads; only their methods fail', { skip: !cc && 'no C compiler' }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rt-pre6-'));
  try {
    // Every function the binding requires, as stubs; none of rt_try_acquire_io,
    // rt_settle_io, rt_pick, rt_observe_headers, rt_report_limited,
    // rt_metrics_text, rt_shm_list, rt_shm_remove.
    const stubs = [
      'rt_global_get_ex', 'rt_global_configure', 'rt_open_ex', 'rt_configure', 'rt_close', 'rt_can_make',
      'rt_record', 'rt_try_acquire', 'rt_try_acquire_grant', 'rt_settle', 'rt_wait_time', 'rt_reset',
      'rt_stats_json_ex', 'rt_free',
    ].map((n) => `int ${n}(void) { return -6; }`);
    fs.writeFileSync(
      path.join(dir, 'pre6.c'),
      [
        'int rt_version_number(void) { return 100; }',
        'const char *rt_version_string(void) { return "0.1.0"; }',
        'const char *rt_status_string(int s) { (void)s; return "stub"; }',
        'const char *rt_last_error(void) { return "stub"; }',
        'static int fake;',
        'int rt_open_ex(const char *c, void **out) { (void)c; *out = &fake; return 0; }',
        ...stubs.filter((s) => !s.includes('rt_open_ex')),
        '',
      ].join('\n'),
    );
    const so = path.join(dir, 'libpre6.so');
    execFileSync(cc, ['-shared', '-fPIC', '-o', so, path.join(dir, 'pre6.c')]);
    const r = inChild(
      `const l = rt.load(${JSON.stringify(so)}); const t = rt.open();
       const tries = {};
       for (const [name, f] of Object.entries({
         pick: () => t.pick(['a/b']),
         tryAcquireIo: () => t.tryAcquireIo('a/b', 1, 1),
         observeHeaders: () => t.observeHeaders('a/b', {}),
         reportLimited: () => t.reportLimited('a/b', '1'),
         metricsText: () => t.metricsText(),
         globalMetricsText: () => rt.metricsText(),
         shmList: () => rt.shmList(),
         shmRemove: () => rt.shmRemove('x'),
       })) {
         try { f(); tries[name] = 'no error'; } catch (e) { tries[name] = e.name + ': ' + e.message; }
       }
       out({ version: l.version, tries });`,
    );
    assert.equal(r.threw, undefined, r.message);
    assert.equal(r.version, '0.1.0');
    for (const [name, fn] of [
      ['pick', 'rt_pick'],
      ['tryAcquireIo', 'rt_try_acquire_io'],
      ['observeHeaders', 'rt_observe_headers'],
      ['reportLimited', 'rt_report_limited'],
      ['metricsText', 'rt_metrics_text'],
      ['globalMetricsText', 'rt_metrics_text'],
      ['shmList', 'rt_shm_list'],
      ['shmRemove', 'rt_shm_remove'],
    ]) {
      assert.match(r.tries[name], new RegExp(`^LoadError: .*has no ${fn}`), name);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
