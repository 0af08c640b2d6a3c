/**
 * Bundles the `wq` command (after `tsc`) into a few CommonJS files in
 * dist/cli-bundle/, which bin/wq loads. Node starts a CommonJS entry with one
 * synchronous read per file, where the ES module loader resolves and reads
 * each of the ~30 modules asynchronously: the bundle makes `wq enqueue --wait`
 * start about 20 ms sooner (docs/benchmarks.md, "CLI start-up"). The library
 * (dist/index.js) is not bundled.
 *
 * Bundled: our code, commander, msgpackr (its pure-JS build), chokidar. Left
 * as packages: write-file-atomic (CommonJS, required only to create a spool),
 * OpenTelemetry (imported only by `wq serve --metrics-port`), and BullMQ and
 * ioredis (only for a `redis://` queue). bin/wq keeps
 * the bundle's compiled code between calls (bin/compile-cache.cjs).
 */
import { rmSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { resolve } from 'node:path';
import commonjs from '@rollup/plugin-commonjs';
import { nodeResolve } from '@rollup/plugin-node-resolve';

const OUTPUT_DIR = 'dist/cli-bundle';
const EXTERNAL_PACKAGES = ['write-file-atomic', '@opentelemetry/', 'bullmq', 'ioredis'];
const LAZY_CHILD_PROCESS = '\0lazy-child-process';
const isCommandersChildProcess = (id, importer) => id === 'node:child_process' && importer?.includes('/node_modules/commander/') === true;

/**
 * commander requires node:child_process at load, for subcommands that are
 * separate executables, which wq has none of. Loading it (and net, dgram and
 * the streams it pulls in) costs every `wq` call about 2.5 ms, so commander
 * gets a stand-in that requires it at the first spawn.
 */
const lazyChildProcess = {
  name: 'lazy-child-process',
  resolveId: (source, importer) => (isCommandersChildProcess(source, importer) ? LAZY_CHILD_PROCESS : null),
  load: (id) =>
    // A named export: commander's require() of it then yields { spawn }, as of the real module.
    id === LAZY_CHILD_PROCESS ? "export function spawn(...args) { return require('node:child_process').spawn(...args); }" : null,
};

const builtins = new Set(builtinModules);

/**
 * Chunks, named after what they hold so that a stack trace says where it is.
 * What `wq enqueue`, `wait` and `abort` run (the static imports of the CLI's
 * entry and of its request commands) is one chunk, the entry `wq.cjs`: each
 * file more costs a call about half a millisecond to find, read and compile.
 * The server's code (serve.cjs) loads it too, for what they share.
 */
const CLIENT_ROOTS = ['/dist/cli/main.js', '/dist/cli/request.js'];
let clientModules;
function clientChunk(id, { getModuleInfo }) {
  if (clientModules === undefined) {
    clientModules = new Set();
    const visit = (moduleId) => {
      if (clientModules.has(moduleId)) return;
      clientModules.add(moduleId);
      for (const next of getModuleInfo(moduleId)?.importedIds ?? []) visit(next);
    };
    for (const root of CLIENT_ROOTS) visit(resolve(root.slice(1)));
  }
  if (clientModules.has(id)) return 'wq';
  return /\/node_modules\/(chokidar|readdirp)\//.test(id) ? 'chokidar' : undefined;
}

export default {
  input: {
    wq: 'dist/cli/main.js',
    // Next to the chunk that spawns it: the pool finds it relative to its own file.
    'process-pool-worker': 'dist/task-manager/process-pool-worker.js',
  },
  // The entry may export more than main(): then it can be the client chunk itself, not a facade that loads it.
  preserveEntrySignatures: 'allow-extension',
  output: {
    dir: OUTPUT_DIR,
    format: 'cjs',
    entryFileNames: '[name].cjs',
    chunkFileNames: '[name].cjs',
    generatedCode: 'es2015',
    manualChunks: clientChunk,
  },
  external: (id, importer) =>
    (id.startsWith('node:') && !isCommandersChildProcess(id, importer)) || builtins.has(id) || EXTERNAL_PACKAGES.some((p) => id === p || id.startsWith(p.endsWith('/') ? p : `${p}/`)),
  plugins: [
    {
      name: 'clean',
      buildStart: () => {
        rmSync(OUTPUT_DIR, { recursive: true, force: true }); // no chunk of an older build lingers
        clientModules = undefined; // nor an older module graph (rollup --watch)
      },
    },
    lazyChildProcess,
    nodeResolve({ exportConditions: ['node', 'import'], preferBuiltins: true }),
    commonjs({ include: /\/node_modules\/commander\// }),
  ],
  onwarn(warning, warn) {
    // Harmless habits of bundled packages (an unused import, a module cycle) are theirs to keep.
    const ids = [...(warning.ids ?? []), ...(warning.id === undefined ? [] : [warning.id])];
    if (ids.length > 0 && ids.every((id) => id.includes('/node_modules/'))) return;
    throw new Error(`rollup: ${warning.message}`); // a warning is a build error: the bundle must be exactly what was meant
  },
};
