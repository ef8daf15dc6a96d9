'use strict';
/**
 * Finds koffi, the binding's only dependency.
 *
 * Installed from a tarball (or by npm 9.0 to 9.4.1, which copy folders), the
 * binding sits in the application's node_modules and `require('koffi')`
 * finds the koffi npm installed beside it. Installed from a folder of a
 * checkout, npm (10, 11, 9.4.2+) only makes a symlink, and Node resolves the
 * binding's own `require('koffi')` from the link's real path, inside the
 * checkout, where there is none. The install command of the README therefore
 * names koffi too, so it is in the application: when the usual resolution
 * fails, koffi is taken from where the application would find it (the main
 * module's directory, then the current directory).
 */
const path = require('node:path');

/** The koffi major version the binding is written for (package.json pins 3.3.4). */
const KOFFI_MAJOR = 3;

function isNotFound(err) {
  return err && err.code === 'MODULE_NOT_FOUND' && /['"]koffi['"]/.test(err.message);
}

/** The directories an application's own require('koffi') would start from. */
function applicationDirs() {
  const dirs = [];
  if (require.main && require.main.filename) dirs.push(path.dirname(require.main.filename));
  dirs.push(process.cwd());
  return [...new Set(dirs)];
}

function findKoffi() {
  let koffi;
  let from = 'the binding';
  try {
    koffi = require('koffi');
  } catch (err) {
    if (!isNotFound(err)) throw err;
    const dirs = applicationDirs();
    let resolved = null;
    try {
      resolved = require.resolve('koffi', { paths: dirs });
    } catch (err2) {
      if (!isNotFound(err2)) throw err2;
    }
    if (resolved === null) {
      const e = new Error(
        `ratetrack: cannot find the module 'koffi', neither beside the binding (${path.dirname(__dirname)}) ` +
          `nor from the application (${dirs.join(', ')}). Install it with the binding, in the application: ` +
          `npm install koffi@3.3.4 /path/to/libratetrack/bindings/node`,
      );
      e.code = 'MODULE_NOT_FOUND';
      throw e;
    }
    koffi = require(resolved);
    from = resolved;
  }
  const major = Number(String(koffi.version).split('.')[0]);
  if (major !== KOFFI_MAJOR) {
    throw new Error(
      `ratetrack: koffi ${koffi.version} (from ${from}) is not koffi ${KOFFI_MAJOR}.x, which this binding needs: ` +
        'npm install koffi@3.3.4',
    );
  }
  return koffi;
}

module.exports = findKoffi();
