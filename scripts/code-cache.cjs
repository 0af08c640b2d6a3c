#!/usr/bin/env node
/**
 * Build step (`npm run build`, after rollup): V8 code caches for the bundled
 * CLI (bin/code-cache.cjs). Serves a scratch spool with `wq serve` and runs
 * `wq enqueue --wait -- true` against it in a child process that records what
 * it compiled, then writes a cache for each bundle file that run loaded.
 *
 * `wq` works without the caches, only slower, so a failure here is reported
 * and the build goes on; test/cli/code-cache.ts checks that they are there
 * and used.
 */
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const { mkdtempSync, readdirSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join, sep } = require('node:path');
const codeCache = require('../bin/code-cache.cjs');

const ROOT = join(__dirname, '..');
const BUNDLE = join(ROOT, 'dist', 'cli-bundle');
const WQ = join(ROOT, 'bin', 'wq');
const TIMEOUT_S = 60;

/** In the child: runs `wq` with `args` in this process, then writes the caches. */
async function record(args) {
  const cache = codeCache.install(BUNDLE + sep, { record: true });
  const cli = require(join(BUNDLE, 'wq.cjs'));
  const code = await cli.main([process.execPath, WQ, ...args]);
  if (code !== 0) throw new Error(`wq ${args.join(' ')} exited ${code}`);
  const written = cache.write();
  process.stderr.write(`code-cache: cached ${written.map((file) => file.slice(BUNDLE.length + 1)).join(', ')}\n`);
}

function removeCaches() {
  for (const name of readdirSync(BUNDLE)) if (name.endsWith('.v8cache')) rmSync(join(BUNDLE, name));
}

/** Resolves once `wq serve` has logged that it serves its spool (so the recorded run is the usual one). */
function started(server) {
  return new Promise((resolve, reject) => {
    let log = '';
    const timer = setTimeout(() => reject(new Error(`wq serve did not start within ${TIMEOUT_S} s: ${log}`)), TIMEOUT_S * 1000);
    server.stderr.on('data', (chunk) => {
      log += chunk;
      if (log.includes('server started')) {
        clearTimeout(timer);
        resolve();
      }
    });
    server.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`wq serve exited (${code ?? signal}): ${log.trim()}`));
    });
  });
}

async function build() {
  removeCaches();
  const scratch = mkdtempSync(join(tmpdir(), 'wq-code-cache-'));
  const spool = join(scratch, 'spool');
  const server = spawn(process.execPath, [WQ, 'serve', '--spool', spool, '--max-tasks', '1'], { stdio: ['ignore', 'ignore', 'pipe'] });
  try {
    await started(server);
    const args = ['enqueue', '--spool', spool, '--wait', '--timeout', String(TIMEOUT_S), '--', 'true'];
    const child = spawnSync(process.execPath, [__filename, '--record', ...args], {
      stdio: ['ignore', 'ignore', 'inherit'],
      timeout: (TIMEOUT_S + 10) * 1000,
    });
    if (child.status !== 0) throw new Error(child.error?.message ?? `the recording run exited ${child.status ?? child.signal}`);
  } finally {
    server.kill('SIGTERM');
    await new Promise((resolve) => (server.exitCode === null && server.signalCode === null ? server.once('exit', resolve) : resolve()));
    rmSync(scratch, { recursive: true, force: true });
  }
}

const [mode, ...args] = process.argv.slice(2);
(mode === '--record' ? record(args) : build()).catch((err) => {
  if (mode !== '--record') {
    try {
      removeCaches(); // all or none
    } catch {
      // nothing to remove (no bundle at all): the message below says what failed
    }
  }
  process.stderr.write(`code-cache: no code caches (wq works, but starts slower): ${err.message}\n`);
  process.exitCode = mode === '--record' ? 1 : 0;
});
