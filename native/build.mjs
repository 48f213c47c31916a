#!/usr/bin/env node
// Builds the native addon with node-gyp when its sources or the chosen libtorch changed.
// Quick (a hash comparison) when everything is up to date. `--force` rebuilds.
import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { findLibtorch } from './find-libtorch.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, 'build', 'Release', 'flexvid.node');
const stampFile = path.join(here, 'build', 'stamp.json');

let torch;
try {
  torch = findLibtorch();
} catch (e) {
  console.error(`flexvid: ${e.message}`);
  process.exit(1);
}

const hash = createHash('sha256');
for (const f of fs.readdirSync(here).sort()) {
  if (/\.(cc|h|gyp|mjs)$/.test(f)) hash.update(f).update(fs.readFileSync(path.join(here, f)));
}
hash.update(JSON.stringify(torch)).update(process.version).update(process.env.FLEXVID_NCCL ?? '').update(process.env.FLEXVID_DNNL ?? '');
const stamp = hash.digest('hex');

const force = process.argv.includes('--force');
if (!force && fs.existsSync(out) && fs.existsSync(stampFile) && JSON.parse(fs.readFileSync(stampFile, 'utf8')).stamp === stamp) {
  process.exit(0);
}

function nodeGypPath() {
  const candidates = [];
  try {
    candidates.push(createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js'));
  } catch {}
  const npmRoot = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  candidates.push(npmRoot);
  try {
    const globalRoot = execFileSync('npm', ['root', '-g'], { encoding: 'utf8' }).trim();
    candidates.push(path.join(globalRoot, 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  } catch {}
  return candidates.find((c) => fs.existsSync(c));
}

const gyp = nodeGypPath();
if (!gyp) {
  console.error('flexvid: node-gyp not found (it ships with npm). Install it with: npm install -g node-gyp');
  process.exit(1);
}
const args = [gyp, 'rebuild', '--release', `--jobs=${Math.max(1, Math.min(2, (await import('node:os')).cpus().length))}`];
// Use the headers of the running node when they sit next to it (no download needed).
const localHeaders = path.join(path.dirname(process.execPath), '..', 'include', 'node', 'node_api.h');
if (fs.existsSync(localHeaders)) args.push(`--nodedir=${path.resolve(path.dirname(process.execPath), '..')}`);
console.error(`flexvid: building the native addon against ${torch.source} (${torch.libdir}); this takes a minute…`);
const t0 = Date.now();
const r = spawnSync(process.execPath, args, { cwd: here, stdio: ['ignore', 'inherit', 'inherit'] });
if (r.status !== 0) {
  console.error('flexvid: native build failed (see the compiler output above).');
  process.exit(r.status ?? 1);
}
fs.writeFileSync(stampFile, JSON.stringify({ stamp, torch, builtAt: new Date().toISOString() }, null, 2));
console.error(`flexvid: native addon built in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
