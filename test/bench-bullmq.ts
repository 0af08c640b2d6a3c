/**
 * The benchmark's BullMQ rows run for real: a private `redis-server` on a free
 * loopback port (bench/redis-server.ts), a BullMQ worker process and client
 * process, inline and sandboxed; and without `redis-server` the bench says it
 * skipped them. Figures are not judged here (timing goals live in the
 * benchmarks); that the rows run, answer every job and report is.
 *
 * Needs `redis-server` (Debian: `apt-get install redis-server`). Without it the
 * tests that need it are skipped, saying so, unless WQ_TEST_REQUIRE names it
 * (`.ci/run` sets WQ_TEST_REQUIRE=redis-server): then they fail.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { createConnection } from 'node:net';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import t, { type Test } from 'tap';
import type * as RedisServer from '../bench/redis-server.js';
import { ROOT } from './fixtures/helpers.js';

const required = (process.env.WQ_TEST_REQUIRE ?? '').split(',').includes('redis-server');
const haveRedis = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).status === 0;
const missing = haveRedis ? false : 'redis-server is not installed (apt-get install redis-server)';
if (!haveRedis && required) t.fail('redis-server is required here (WQ_TEST_REQUIRE=redis-server) but is not installed');

/** Compiles src/ and bench/ into the test's own directory, as test/torture.ts does (t.testdir() is called once per test: a second call empties it). */
function compileBench(t: Test): string | undefined {
  const build = join(t.testdir(), 'build');
  const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.bench.json'), '--outDir', build], { encoding: 'utf8' });
  t.equal(tsc.status, 0, 'bench/ compiles', { output: tsc.stdout + tsc.stderr });
  return tsc.status === 0 ? build : undefined;
}

function ping(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      resolve(data.toString());
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

t.test('the bench\'s redis-server: on a free loopback port, answering, stopped by its pid with its directory removed', { skip: missing }, async (t) => {
  const build = compileBench(t);
  if (build === undefined) return;
  const { startRedis } = (await import(pathToFileURL(join(build, 'bench', 'redis-server.js')).href)) as typeof RedisServer;
  const redis = await startRedis();
  t.ok(redis, 'started');
  if (redis === undefined) return;
  t.teardown(() => redis.stop());
  t.equal(redis.host, '127.0.0.1', 'loopback only');
  t.match(redis.version, /^\d+\.\d+/, 'its version, for the report');
  t.equal(await ping(redis.port), '+PONG\r\n');
  await redis.stop();
  await t.rejects(ping(redis.port), { code: 'ECONNREFUSED' }, 'gone after stop()');
});

t.test('the BullMQ rows, inline and sandboxed, at concurrency 1 and 4: every job answered, every row reported', { skip: missing }, async (t) => {
  const build = compileBench(t);
  if (build === undefined) return;
  const run = spawnSync(process.execPath, [join(build, 'bench', 'run.js'), '--quick', '--only=^BullMQ'], {
    encoding: 'utf8',
    env: { ...process.env, WQ_BENCH_CONCURRENT_WARMUP: '0' },
    timeout: 240_000,
  });
  t.equal(run.status, 0, 'the bench ran to its end', { stderr: run.stderr });
  t.match(run.stderr, /BullMQ and wq-on-Redis rows against redis-server \d/, 'it says which redis-server it used');
  for (const row of ['inline processor, concurrency 1, sequential', 'sandboxed processor, concurrency 1, sequential', 'inline processor, concurrency 4, 50 clients in 1 process', 'sandboxed processor, concurrency 4, 50 clients in 1 process']) {
    const line = run.stdout.split('\n').find((l) => l.startsWith(`| BullMQ, ${row} |`));
    t.ok(line, `the table has "BullMQ, ${row}"`);
    const rps = Number(line?.split('|')[4]);
    t.ok(rps > 0, `with a rate (${rps} req/s)`);
  }
  // (The compiled bench's root is the directory above its build: where it would write docs/.)
  t.notOk(existsSync(join(dirname(build), 'docs', 'benchmarks.md')), 'a run with --only writes no report');
  t.equal(spawnSync('pgrep', ['-f', join(build, 'bench', 'bullmq-')]).status, 1, 'no BullMQ process of the bench is left');
});

t.test('without redis-server the bench leaves the BullMQ rows out and says so, in its log and in its report', async (t) => {
  const build = compileBench(t);
  if (build === undefined) return;
  // A PATH with everything of the usual one but redis-server.
  const bin = join(dirname(build), 'bin');
  mkdirSync(bin, { recursive: true });
  for (const dir of (process.env.PATH ?? '').split(':').filter((d) => d !== '' && existsSync(d)).reverse()) {
    for (const name of readdirSync(dir)) {
      if (name.startsWith('redis-')) continue;
      rmSync(join(bin, name), { force: true }); // the earlier PATH entry wins, as in a lookup
      symlinkSync(join(dir, name), join(bin, name));
    }
  }
  const run = spawnSync(process.execPath, [join(build, 'bench', 'run.js'), '--quick', '--only=^BullMQ'], { encoding: 'utf8', env: { ...process.env, PATH: bin }, timeout: 120_000 });
  t.equal(run.status, 0, 'the bench runs the rest', { stderr: run.stderr });
  t.match(run.stderr, 'redis-server is not installed, so the BullMQ and wq-on-Redis rows are skipped (install it with `apt-get install redis-server`)');
  t.match(run.stdout, 'The BullMQ rows were skipped: `redis-server` is not installed');
  t.notMatch(run.stdout, /\| BullMQ, /, 'no BullMQ row');
});
