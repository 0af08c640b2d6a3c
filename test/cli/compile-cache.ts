/**
 * The compiled code `wq` keeps between calls (bin/compile-cache.cjs). The
 * loader is tested on a small module of its own (write, use, edit, damage,
 * refuse), then the real `wq` with every cache file damaged. Every run is a
 * fresh Node: a cache is read when a file is first compiled, written at exit.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import t from 'tap';
import { wq } from '../fixtures/cli.js';
import { ROOT } from '../fixtures/helpers.js';

const BUNDLE = join(ROOT, 'dist', 'cli-bundle');
const LOADER = join(ROOT, 'bin', 'compile-cache.cjs');
const { HEADER_BYTES } = createRequire(import.meta.url)(LOADER) as { HEADER_BYTES: number };
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

type Status = 'used' | 'rejected' | 'none' | 'off';

/**
 * Loads `entry` through the loader in a fresh Node whose cache home is
 * `cacheHome`, runs `body` (JavaScript that sets `result` from `exports`,
 * maybe to a promise), and returns the loader's status, `result`, and whether
 * node:child_process got loaded. The child runs under `env -u NODE_OPTIONS`:
 * tap adds its process-info hook (an --import that loads child_process, among
 * others) to every child's NODE_OPTIONS, whatever env it is given.
 */
function inFreshNode(entry: string, cacheHome: string, body: string, env: NodeJS.ProcessEnv = {}): { status: Status; result: unknown; childProcessLoaded: boolean } {
  const script = `
    const { exports, status } = require(${JSON.stringify(LOADER)}).load(${JSON.stringify(entry)});
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = () => true; // what the code under test prints is not the report
    let result;
    ${body}
    Promise.resolve(result).then((result) => {
      const childProcessLoaded = process.moduleLoadList.includes('NativeModule child_process');
      write(JSON.stringify({ status, result, childProcessLoaded }));
    });`;
  const out = execFileSync('env', ['-u', 'NODE_OPTIONS', process.execPath, '-e', script], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, XDG_CACHE_HOME: cacheHome, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return JSON.parse(out) as { status: Status; result: unknown; childProcessLoaded: boolean };
}

/** The loader's own cache files (Node's compile cache keeps its entries in subdirectories). */
function entryCaches(cacheHome: string): string[] {
  return readdirSync(join(cacheHome, 'wq'))
    .filter((name) => name.endsWith('.cache'))
    .map((name) => join(cacheHome, 'wq', name));
}

/** Every file under `dir`. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((name) => join(dir, name))
    .filter((path) => statSync(path).isFile());
}

t.test('the loader: a cache is written at exit, used, and never one that does not belong to its file', async (t) => {
  const dir = realpathSync(t.testdir({ 'a.cjs': "exports.f = () => 'one';\n", cache: {} }));
  const entry = join(dir, 'a.cjs');
  const cacheHome = join(dir, 'cache');
  const callF = 'result = exports.f();';

  let run = inFreshNode(entry, cacheHome, callF);
  t.same([run.status, run.result], ['none', 'one'], 'the first run had no cache and ran the file');
  const [cache] = entryCaches(cacheHome);
  t.ok(cache !== undefined, 'and left a cache for it');
  t.equal(statSync(join(cacheHome, 'wq')).mode & 0o777, 0o700, 'in a directory of the user alone');

  run = inFreshNode(entry, cacheHome, callF);
  t.same([run.status, run.result], ['used', 'one'], 'the next run was compiled from it');

  writeFileSync(entry, "exports.f = () => 'two';\n"); // same length: V8 alone would take the old cache
  run = inFreshNode(entry, cacheHome, callF);
  t.same([run.status, run.result], ['none', 'two'], "an edited file's cache is not used, and the edited code runs");
  t.equal(inFreshNode(entry, cacheHome, callF).status, 'used', 'the run after has a cache for the new code');

  const npmTime = new Date('1985-10-26T08:15:00Z'); // npm gives every file it installs this modification time
  utimesSync(entry, npmTime, npmTime);
  t.equal(inFreshNode(entry, cacheHome, callF).result, 'two', 'installed as npm does'); // and cached
  writeFileSync(entry, "exports.f = () => 'tri';\n"); // an upgrade: same length, same modification time
  utimesSync(entry, npmTime, npmTime);
  run = inFreshNode(entry, cacheHome, callF);
  t.same([run.status, run.result], ['none', 'tri'], 'a file replaced with its size and modification time kept does not run the old code');

  const good = readFileSync(cache!);
  const flipped = Buffer.from(good);
  for (let i = Math.floor(good.length / 2); i < good.length / 2 + 64; i++) flipped[i]! ^= 0xff; // V8 itself would crash on this
  writeFileSync(cache!, flipped);
  run = inFreshNode(entry, cacheHome, callF);
  t.same([run.status, run.result], ['none', 'tri'], 'a cache damaged in place is not handed to V8');

  for (const damaged of [good.subarray(0, HEADER_BYTES + 10), good.subarray(0, 5), Buffer.alloc(0), Buffer.from('not a cache at all, some other program wrote this')]) {
    writeFileSync(cache!, damaged);
    run = inFreshNode(entry, cacheHome, callF);
    t.same([run.status, run.result], ['none', 'tri'], `a cache of ${damaged.length} bytes that is not whole is ignored`);
    t.equal(inFreshNode(entry, cacheHome, callF).status, 'used', 'and replaced at exit');
  }
});

t.test('the loader: V8 refuses a cache whose checksum holds but whose code is for another source', async (t) => {
  const dir = realpathSync(t.testdir({ 'a.cjs': "exports.f = () => 'one';\n", 'b.cjs': "exports.f = () => 'a longer one';\n", ha: {}, hb: {} }));
  inFreshNode(join(dir, 'a.cjs'), join(dir, 'ha'), 'result = exports.f();');
  inFreshNode(join(dir, 'b.cjs'), join(dir, 'hb'), 'result = exports.f();');
  const [cacheA] = entryCaches(join(dir, 'ha'));
  const [cacheB] = entryCaches(join(dir, 'hb'));
  // b's header (its size, mtime) in front of a's code, with a checksum that matches that code.
  const headerB = readFileSync(cacheB!).subarray(0, HEADER_BYTES);
  const dataA = readFileSync(cacheA!).subarray(HEADER_BYTES);
  const { crc32 } = createRequire(import.meta.url)('node:zlib') as { crc32(data: Buffer): number };
  headerB.writeUInt32LE(crc32(dataA), HEADER_BYTES - 4);
  writeFileSync(cacheB!, Buffer.concat([headerB, dataA]));
  const run = inFreshNode(join(dir, 'b.cjs'), join(dir, 'hb'), 'result = exports.f();');
  t.same([run.status, run.result], ['rejected', 'a longer one'], 'V8 refused it and the file was compiled as usual');
});

t.test('the loader: no usable cache directory, or NODE_DISABLE_COMPILE_CACHE, only means no cache', async (t) => {
  const dir = realpathSync(t.testdir({ 'a.cjs': "exports.f = () => 'one';\n", 'a-file': '', home: {} }));
  const entry = join(dir, 'a.cjs');
  const callF = 'result = exports.f();';
  t.same(inFreshNode(entry, join(dir, 'a-file'), callF), { status: 'off', result: 'one', childProcessLoaded: false }, 'a file where the cache home should be');
  t.same(inFreshNode(entry, join(dir, 'missing', 'cache'), callF).status, 'off', 'a cache home whose parent is missing');
  t.same(readdirSync(dir).sort(), ['a-file', 'a.cjs', 'home'], 'is not created');
  t.same(inFreshNode(entry, '', callF, { HOME: join(dir, 'home') }).status, 'none', 'without XDG_CACHE_HOME: ~/.cache');
  t.ok(entryCaches(join(dir, 'home', '.cache')).length === 1, 'holds the cache');

  mkdirSync(join(dir, 'busy'));
  mkdirSync(join(dir, 'busy', 'wq'));
  inFreshNode(entry, join(dir, 'other'), callF);
  const name = entryCaches(join(dir, 'other'))[0]!.split('/').pop()!;
  mkdirSync(join(dir, 'busy', 'wq', name)); // a directory where the cache file goes
  t.same(inFreshNode(entry, join(dir, 'busy'), callF).result, 'one', 'a directory in place of the cache file');
  t.ok(statSync(join(dir, 'busy', 'wq', name)).isDirectory(), 'is left alone');

  mkdirSync(join(dir, 'off'));
  const off = inFreshNode(entry, join(dir, 'off'), callF, { NODE_DISABLE_COMPILE_CACHE: '1' });
  t.same([off.status, off.result], ['off', 'one'], 'NODE_DISABLE_COMPILE_CACHE=1 turns it off');
  t.same(readdirSync(join(dir, 'off')), [], 'and nothing is written');
});

t.test("the loader: a cache that is not the user's alone, or not a file, is never read", async (t) => {
  const dir = realpathSync(t.testdir({ 'a.cjs': "exports.f = () => 'one';\n", home: {} }));
  const entry = join(dir, 'a.cjs');
  const cacheHome = join(dir, 'home');
  const callF = 'result = exports.f();';
  inFreshNode(entry, cacheHome, callF);
  const [cache] = entryCaches(cacheHome);
  t.equal(inFreshNode(entry, cacheHome, callF).status, 'used', 'a cache of our own is used');

  chmodSync(join(cacheHome, 'wq'), 0o777);
  t.same(inFreshNode(entry, cacheHome, callF), { status: 'off', result: 'one', childProcessLoaded: false }, 'a directory others may write is not used');
  chmodSync(join(cacheHome, 'wq'), 0o700);

  const good = readFileSync(cache!);
  rmSync(cache!);
  writeFileSync(join(dir, 'elsewhere'), good);
  symlinkSync(join(dir, 'elsewhere'), cache!);
  t.same([inFreshNode(entry, cacheHome, callF).status], ['none'], 'a symlink is not followed');
  rmSync(cache!);
  execFileSync('mkfifo', [cache!]);
  t.same([inFreshNode(entry, cacheHome, callF).status], ['none'], 'a FIFO is not opened to block on');
  rmSync(cache!);

  if (process.getuid?.() !== 0) return;
  writeFileSync(cache!, good);
  chownSync(cache!, 1, 1);
  t.same([inFreshNode(entry, cacheHome, callF).status], ['none'], "a cache file another user owns is not used (even by root)");
  chownSync(join(cacheHome, 'wq'), 1, 1);
  t.same([inFreshNode(entry, cacheHome, callF).status], ['off'], 'nor a cache directory another user owns');
});

t.test('wq works with every cache file damaged: truncated, flipped, foreign, unreadable', async (t) => {
  const dir = realpathSync(t.testdir({ cache: {} }));
  const env = { XDG_CACHE_HOME: join(dir, 'cache') };
  const spool = join(dir, 'spool');
  t.same(await wq(['--version'], { env }), { code: 0, signal: null, stdout: `${VERSION}\n`, stderr: '' }, 'a first run writes the cache');
  t.equal((await wq(['enqueue', '--spool', spool, '--quiet', '--', 'true'], { env })).code, 0, 'a request waits in the spool');
  t.equal((await wq(['status', '--spool', spool], { env })).code, 0, 'wq status runs too');
  const files = filesUnder(join(dir, 'cache'));
  t.ok(files.length >= 1, `the cache holds files (${files.length})`);

  const damages: Array<[string, (path: string) => void]> = [
    ['truncated to half', (path) => truncateSync(path, Math.floor(statSync(path).size / 2))],
    ['flipped in the middle', (path) => {
      const data = readFileSync(path);
      for (let i = Math.floor(data.length / 2); i < data.length / 2 + 256 && i < data.length; i++) data[i]! ^= 0xff;
      writeFileSync(path, data);
    }],
    ['replaced by another program\'s file', (path) => writeFileSync(path, readFileSync(process.execPath).subarray(0, statSync(path).size))],
    ['emptied', (path) => truncateSync(path, 0)],
    ['unreadable', (path) => {
      writeFileSync(path, 'x');
      chmodSync(path, 0o000);
    }],
  ];
  for (const [how, damage] of damages) {
    for (const file of filesUnder(join(dir, 'cache'))) {
      chmodSync(file, 0o600);
      damage(file);
    }
    t.same(await wq(['--version'], { env }), { code: 0, signal: null, stdout: `${VERSION}\n`, stderr: '' }, `wq --version, every cache file ${how}`);
    const status = await wq(['status', '--spool', spool], { env });
    t.same([status.code, status.stderr], [0, ''], `wq status, every cache file ${how}`);
    t.match(status.stdout, 'queued #1 of 1', 'and shows the waiting request');
  }
  rmSync(join(dir, 'cache'), { recursive: true });
  writeFileSync(join(dir, 'cache'), 'a file where the cache home should be');
  t.same(await wq(['--version'], { env }), { code: 0, signal: null, stdout: `${VERSION}\n`, stderr: '' }, 'wq --version with a file for a cache home');
});

t.test('the bundle: the entry has no import() (a script compiled from a cache cannot use it on Node 20), commander does not load child_process', async (t) => {
  const entry = readFileSync(join(BUNDLE, 'wq.cjs'), 'utf8');
  const dynamicImport = /^(?!\s*(\*|\/\/)).*\bimport\s*\(/m; // import() in code, not in a comment
  t.notMatch(entry, dynamicImport, 'dist/cli-bundle/wq.cjs does not import()');
  const cacheHome = t.testdir();
  const body = "result = exports.main([process.execPath, 'wq', '--version']);";
  t.equal(inFreshNode(join(BUNDLE, 'wq.cjs'), cacheHome, body).status, 'none', 'a first run writes the cache');
  const run = inFreshNode(join(BUNDLE, 'wq.cjs'), cacheHome, body);
  t.same([run.status, run.result], ['used', 0], 'the CLI was compiled from its cache and wq --version exits 0');
  t.equal(run.childProcessLoaded, false, 'node:child_process is not loaded until something spawns');
});

t.test("commander's stand-in for child_process spawns", async (t) => {
  // wq has no subcommand that is a program of its own; one added here must still run.
  const body = `
    const program = exports.buildProgram();
    result = new Promise((resolve) => {
      program.exitOverride((err) => resolve(err.exitCode));
      program.command('probe', 'a program of its own', { executableFile: '/bin/sh' });
      program.parseAsync([process.execPath, 'wq', 'probe', '-c', 'exit 7']);
    });`;
  t.equal(inFreshNode(join(BUNDLE, 'wq.cjs'), t.testdir(), body).result, 7, 'the subcommand ran and its exit code came back');
});
