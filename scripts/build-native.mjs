// Builds the ICMP socket addon (native/icmp/icmp.c) with node-gyp, into
// native/icmp/build/Release/faultline_icmp.node, and copies it to dist/native/ beside the
// compiled modules, so the package (which ships dist) carries it. Run by `npm run build`;
// the compile is skipped when the addon is newer than its sources. N-API keeps one build
// loadable by every Node version the package supports.
//
// The addon is optional: without it, icmp probes run on fping or ping as before. So a
// failed build warns and exits 0, unless FAULTLINE_NATIVE=required (CI, the Docker image),
// where it fails: there the tests and the image expect the socket engine.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = fileURLToPath(new URL('../native/icmp/', import.meta.url));
const addon = join(dir, 'build/Release/faultline_icmp.node');
const shipped = fileURLToPath(new URL('../dist/native/faultline_icmp.node', import.meta.url));
const sources = ['icmp.c', 'binding.gyp'].map((f) => join(dir, f));
const required = process.env.FAULTLINE_NATIVE === 'required';

function mtime(file) {
  return existsSync(file) ? statSync(file).mtimeMs : 0;
}

/** npm's own node-gyp: npm names it in scripts; else beside the npm that runs, or beside node. */
function nodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    process.env.npm_execpath &&
      join(dirname(process.env.npm_execpath), '../node_modules/node-gyp/bin/node-gyp.js'),
    join(
      dirname(process.execPath),
      '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js',
    ),
  ];
  return candidates.find((c) => typeof c === 'string' && c.length > 0 && existsSync(c));
}

/**
 * Where node's headers are: npm's `nodedir` setting, else the tree node itself runs from
 * (/usr for /usr/bin/node; node's own tarball ships include/node). Without one, node-gyp
 * would download the headers, which is not possible offline.
 */
function nodeDir() {
  const candidates = [process.env.npm_config_nodedir, join(dirname(process.execPath), '..')];
  return candidates.find(
    (c) => typeof c === 'string' && c.length > 0 && existsSync(join(c, 'include/node/node_api.h')),
  );
}

function fail(message) {
  // No stale copy: the modules then fall back to fping as they say.
  rmSync(shipped, { force: true });
  if (required) {
    console.error(`faultline: build-native: ${message}`);
    process.exit(1);
  }
  console.warn(
    `faultline: build-native: ${message}\n` +
      '  icmp probes will run on fping or ping instead of an ICMP socket. To build the addon,\n' +
      '  install a C compiler, make and python3, then run: node scripts/build-native.mjs',
  );
  process.exit(0);
}

/**
 * Copies the addon into dist/native/ under a new name, then renames it over the old one: a
 * running agent keeps its mapping of the old file. Writing into that file instead (a plain
 * copy onto it) changes the code under the running agent, which then crashes.
 */
function ship() {
  mkdirSync(dirname(shipped), { recursive: true });
  const fresh = `${shipped}.${process.pid}.tmp`;
  copyFileSync(addon, fresh);
  renameSync(fresh, shipped);
}

if (mtime(addon) > Math.max(...sources.map(mtime))) {
  ship();
  process.exit(0);
}
if (process.platform !== 'linux')
  fail(`the ICMP socket addon is Linux only (this is ${process.platform})`);
const gyp = nodeGyp();
if (gyp === undefined)
  fail("node-gyp not found (it comes with npm: is this node's npm installed?)");
const headers = nodeDir();
const args = [gyp, 'rebuild', `--directory=${dir}`, ...(headers ? [`--nodedir=${headers}`] : [])];
const run = spawnSync(process.execPath, args, {
  stdio: ['ignore', 'ignore', 'inherit'],
});
if (run.error !== undefined) fail(`node-gyp did not run: ${run.error.message}`);
if (run.status !== 0 || !existsSync(addon)) fail(`node-gyp failed (exit ${run.status}): see above`);
ship();
