/**
 * The bundled CLI's V8 code caches (bin/code-cache.cjs; scripts/code-cache.cjs
 * makes them during `npm run build`). The loader is tested on a small module
 * tree of its own (record, use, edit, spoil, remove), the build's output on
 * the real bundle. Every run is a fresh Node: a cache is read when a file is
 * first compiled.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, sep } from 'node:path';
import t from 'tap';

const ROOT = join(import.meta.dirname, '..', '..');
const BUNDLE = join(ROOT, 'dist', 'cli-bundle');
const LOADER = join(ROOT, 'bin', 'code-cache.cjs');
const { HEADER_BYTES } = createRequire(import.meta.url)(LOADER) as { HEADER_BYTES: number };
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

interface Stats {
  used: number;
  rejected: number;
  stale: number;
}

/**
 * Runs `body` (JavaScript that sets `result`, maybe a promise) in a fresh Node
 * after installing the loader on `dir`, recording if asked; returns what the
 * loader counted, `result`, and whether node:child_process got loaded.
 * The child runs under `env -u NODE_OPTIONS`: tap adds its process-info hook
 * (an --import that loads child_process, among others) to every child's
 * NODE_OPTIONS, whatever env it is given.
 */
function inFreshNode(dir: string, body: string, record = false): { stats: Stats; result: unknown; childProcessLoaded: boolean } {
  const script = `
    const cache = require(${JSON.stringify(LOADER)}).install(${JSON.stringify(dir + sep)}, { record: ${record} });
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = () => true; // what the code under test prints is not the report
    let result;
    ${body}
    Promise.resolve(result).then((result) => {
      if (${record}) cache.write();
      const childProcessLoaded = process.moduleLoadList.includes('NativeModule child_process');
      write(JSON.stringify({ stats: cache.stats, result, childProcessLoaded }));
    });`;
  const out = execFileSync('env', ['-u', 'NODE_OPTIONS', process.execPath, '-e', script], {
    encoding: 'utf8',
    timeout: 30_000,
    stdio: ['ignore', 'pipe', 'pipe'], // an ExperimentalWarning (import() under the loader) is not a failure
  });
  return JSON.parse(out) as { stats: Stats; result: unknown; childProcessLoaded: boolean };
}

t.test('the loader: a recorded cache is used, and never one that does not belong to its file', async (t) => {
  const dir = realpathSync(t.testdir({ 'a.cjs': "module.exports = () => 'one';\n", 'b.cjs': "module.exports = () => require('./a.cjs')() + '!';\n" }));
  const callB = `result = require(${JSON.stringify(join(dir, 'b.cjs'))})();`;

  t.equal(inFreshNode(dir, callB, true).result, 'one!', 'the recording run ran the files');
  t.ok(existsSync(join(dir, 'a.v8cache')) && existsSync(join(dir, 'b.v8cache')), 'recording wrote a cache per file');

  let run = inFreshNode(dir, callB);
  t.same(run.stats, { used: 2, rejected: 0, stale: 0 }, 'both files were compiled from their caches');
  t.equal(run.result, 'one!', 'and ran as written');

  writeFileSync(join(dir, 'a.cjs'), "module.exports = () => 'two';\n"); // same length: V8 alone would take the old cache
  run = inFreshNode(dir, callB);
  t.same(run.stats, { used: 1, rejected: 0, stale: 1 }, "the edited file's cache was seen to be stale");
  t.equal(run.result, 'two!', 'the edited code ran, not the cached one');

  const cacheB = readFileSync(join(dir, 'b.v8cache'));
  cacheB.fill(0x5a, HEADER_BYTES); // our header still matches b.cjs; what follows is not V8's
  writeFileSync(join(dir, 'b.v8cache'), cacheB);
  run = inFreshNode(dir, callB);
  t.same(run.stats, { used: 0, rejected: 1, stale: 1 }, 'V8 refused data that is not a cache of its');
  t.equal(run.result, 'two!', 'and the file was compiled as usual');

  rmSync(join(dir, 'a.v8cache'));
  rmSync(join(dir, 'b.v8cache'));
  run = inFreshNode(dir, callB);
  t.same(run.stats, { used: 0, rejected: 0, stale: 0 }, 'without caches nothing is used');
  t.equal(run.result, 'two!');
});

t.test('the build leaves a code cache for the CLI that V8 accepts, and commander does not load child_process', async (t) => {
  t.ok(existsSync(join(BUNDLE, 'wq.v8cache')), 'dist/cli-bundle/wq.v8cache exists');
  const run = inFreshNode(BUNDLE, `result = require(${JSON.stringify(join(BUNDLE, 'wq.cjs'))}).main([process.execPath, 'wq', '--version']);`);
  t.equal(run.result, 0, 'wq --version exits 0');
  t.same(run.stats, { used: 1, rejected: 0, stale: 0 }, 'the CLI was compiled from its cache');
  t.equal(run.childProcessLoaded, false, 'node:child_process is not loaded until something spawns');
});

t.test('require.resolve and import() work under the loader; files that import() are not cached', async (t) => {
  const dir = realpathSync(
    t.testdir({
      'a.cjs': "module.exports = 'a';\n",
      'c.cjs': [
        'module.exports = async () => ({',
        "  loaded: require('./a.cjs'),",
        "  resolved: require.resolve('./a.cjs'),",
        "  paths: Array.isArray(require.resolve.paths('some-package')),",
        "  imported: (await import('node:path')).sep,",
        '});',
        '',
      ].join('\n'),
    }),
  );
  const callC = `result = require(${JSON.stringify(join(dir, 'c.cjs'))})();`;
  const expected = { loaded: 'a', resolved: join(dir, 'a.cjs'), paths: true, imported: sep };
  t.same(inFreshNode(dir, callC, true).result, expected, 'while recording');
  t.ok(existsSync(join(dir, 'a.v8cache')), 'a.cjs got a cache');
  t.notOk(existsSync(join(dir, 'c.v8cache')), 'c.cjs, which uses import(), did not');
  const run = inFreshNode(dir, callC);
  t.same(run.stats, { used: 1, rejected: 0, stale: 0 }, 'a.cjs came from its cache, c.cjs from Node');
  t.same(run.result, expected, 'and both work');
});

t.test("commander's stand-in for child_process spawns", async (t) => {
  // wq has no subcommand that is a program of its own; one added here must still run.
  const body = `
    const program = require(${JSON.stringify(join(BUNDLE, 'wq.cjs'))}).buildProgram();
    result = new Promise((resolve) => {
      program.exitOverride((err) => resolve(err.exitCode));
      program.command('probe', 'a program of its own', { executableFile: '/bin/sh' });
      program.parseAsync([process.execPath, 'wq', 'probe', '-c', 'exit 7']);
    });`;
  t.equal(inFreshNode(BUNDLE, body).result, 7, 'the subcommand ran and its exit code came back');
});
