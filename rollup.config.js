/**
 * Bundles the `wq` command (after `tsc`) into a few CommonJS files in
 * dist/cli-bundle/, which bin/wq loads. Node starts a CommonJS entry with one
 * synchronous read per file, where the ES module loader resolves and reads
 * each of the ~30 modules asynchronously: the bundle makes `wq enqueue --wait`
 * start about 20 ms sooner (docs/benchmarks.md, "CLI start-up"). The library
 * (dist/index.js) is not bundled.
 *
 * Bundled: our code, msgpackr (its pure-JS build), chokidar. Left as packages:
 * commander and write-file-atomic (CommonJS already, loaded with require) and
 * OpenTelemetry (imported only by `wq serve --metrics-port`).
 */
import { rmSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { nodeResolve } from '@rollup/plugin-node-resolve';

const EXTERNAL_PACKAGES = ['commander', 'write-file-atomic', '@opentelemetry/'];
const builtins = new Set(builtinModules);

export default {
  input: {
    wq: 'dist/cli/main.js',
    // Next to the chunk that spawns it: the pool finds it relative to its own file.
    'process-pool-worker': 'dist/task-manager/process-pool-worker.js',
  },
  output: {
    dir: 'dist/cli-bundle',
    format: 'cjs',
    entryFileNames: '[name].cjs',
    chunkFileNames: '[name].cjs',
    generatedCode: 'es2015',
    // Named after what they hold, so a stack trace says where it is.
    manualChunks: (id) => (id.includes('/node_modules/msgpackr/') ? 'msgpackr' : /\/node_modules\/(chokidar|readdirp)\//.test(id) ? 'chokidar' : undefined),
  },
  external: (id) =>
    id.startsWith('node:') || builtins.has(id) || EXTERNAL_PACKAGES.some((p) => id === p || id.startsWith(p.endsWith('/') ? p : `${p}/`)),
  plugins: [
    { name: 'clean', buildStart: () => rmSync('dist/cli-bundle', { recursive: true, force: true }) }, // no chunk of an older build lingers
    nodeResolve({ exportConditions: ['node', 'import'], preferBuiltins: true }),
  ],
  onwarn(warning, warn) {
    // Harmless habits of bundled packages (an unused import, a module cycle) are theirs to keep.
    const ids = [...(warning.ids ?? []), ...(warning.id === undefined ? [] : [warning.id])];
    if (ids.length > 0 && ids.every((id) => id.includes('/node_modules/'))) return;
    throw new Error(`rollup: ${warning.message}`); // a warning is a build error: the bundle must be exactly what was meant
  },
};
