/**
 * Several `wq serve --queue redis://…` at once, as on several hosts (each
 * server its own process and environment; WQ_HOST tells the tasks which one
 * runs them): per-host and global limits, FIFO across servers, a server
 * killed or cut off from Redis mid-task. Tasks that must never overlap hold
 * an flock(1) on a file: the kernel, not the test, says whether two ran at once.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { exited, wq } from '../fixtures/cli.js';
import { spawnWq, waitFor } from '../fixtures/helpers.js';
import { concurrencyOf } from '../fixtures/processes.js';
import { noRedis, queueOn, redisFor, serveQueue, type RedisServer } from '../fixtures/redis.js';

function lines(path: string): string[] {
  return existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter((l) => l !== '') : [];
}

/** Runs `sh -c SCRIPT` through the queue from `dir`; resolves with its id. */
async function enqueue(queue: string, dir: string, script: string): Promise<string> {
  const r = await wq(['enqueue', '--queue', queue, '--', 'sh', '-c', script], { cwd: dir });
  if (r.code !== 0) throw new Error(`enqueue failed: ${r.stderr}`);
  return r.stdout.trim();
}

t.test('two servers, --max-tasks 2 each, --global-max-tasks 3: at most 3 at once, 2 per host, every request once', { skip: noRedis }, async (t) => {
  const queue = queueOn(await redisFor(t));
  const dir = t.testdir();
  const log = join(dir, 'log');
  // Queued before the servers start: a line long enough that both have work, whoever wakes first.
  const ids: string[] = [];
  for (let n = 1; n <= 12; n++) ids.push(await enqueue(queue, dir, `echo "start ${n} $WQ_HOST" >> log; sleep 0.3; echo "end ${n} $WQ_HOST" >> log`));
  for (const host of ['A', 'B']) await serveQueue(t, queue, ['--allow-shared-commands', '--max-tasks', '2', '--global-max-tasks', '3'], { WQ_HOST: host });
  for (const id of ids) t.equal((await wq(['wait', '--queue', queue, id])).code, 0);
  const all = lines(log);
  const { maxRunning, starts } = concurrencyOf(all.map((l) => l.split(' ').slice(0, 2).join(' ')));
  t.ok(maxRunning <= 3, `never more than 3 at once (saw ${maxRunning})`);
  for (const host of ['A', 'B']) {
    const mine = all.filter((l) => l.endsWith(` ${host}`)).map((l) => l.split(' ').slice(0, 2).join(' '));
    t.ok(concurrencyOf(mine).maxRunning <= 2, `host ${host}: never more than 2 at once`);
    t.ok(mine.length > 0, `host ${host} ran some`);
  }
  t.same([...starts].sort((a, b) => Number(a) - Number(b)), ids.map((_, i) => String(i + 1)), 'each request ran exactly once');
});

t.test('FIFO across servers: with one task at a time on the whole queue, they start in the order they were enqueued', { skip: noRedis }, async (t) => {
  const queue = queueOn(await redisFor(t));
  const dir = t.testdir();
  const ids: string[] = [];
  // Enqueued before any server runs, so that the line is long when they start.
  for (let n = 1; n <= 8; n++) ids.push(await enqueue(queue, dir, `echo "start ${n}" >> log; echo "end ${n}" >> log`));
  for (const host of ['A', 'B']) await serveQueue(t, queue, ['--allow-shared-commands', '--max-tasks', '2', '--global-max-tasks', '1'], { WQ_HOST: host });
  for (const id of ids) t.equal((await wq(['wait', '--queue', queue, id])).code, 0);
  t.same(concurrencyOf(lines(join(dir, 'log'))).starts, ['1', '2', '3', '4', '5', '6', '7', '8']);
});

t.test('abort of a task running on the other server kills its process group within a second', { skip: noRedis }, async (t) => {
  const queue = queueOn(await redisFor(t));
  const dir = t.testdir();
  for (const host of ['A', 'B']) await serveQueue(t, queue, ['--allow-shared-commands', '--max-tasks', '1'], { WQ_HOST: host });
  const ids = [await enqueue(queue, dir, 'sleep 60 & echo "$WQ_HOST $$ $!" >> pids; wait'), await enqueue(queue, dir, 'sleep 60 & echo "$WQ_HOST $$ $!" >> pids; wait')];
  await waitFor(() => lines(join(dir, 'pids')).length === 2, 'both to run');
  const pids = lines(join(dir, 'pids'));
  t.same(pids.map((l) => l.split(' ')[0]).sort(), ['A', 'B'], 'one on each server');
  const abort = await wq(['abort', '--queue', queue, ...ids]);
  t.equal(abort.code, 0, abort.stderr);
  const { isGone } = await import('../fixtures/processes.js');
  const group = pids.flatMap((l) => l.split(' ').slice(1).map(Number));
  await waitFor(() => group.every(isGone), 'every process of both tasks to be gone', 1000);
  t.pass('both killed, background children included');
});

t.test('kill -9 of the server running a task: another server runs it again after the lock expires, never both at once', { skip: noRedis }, async (t) => {
  const queue = queueOn(await redisFor(t));
  const dir = t.testdir();
  const a = await serveQueue(t, queue, ['--allow-shared-commands', '--lock-duration', '2', '--kill-grace', '0.5'], { WQ_HOST: 'A', WQ_SLEEP: '60' });
  const id = await enqueue(queue, dir, 'flock -n lock -c \'echo "$WQ_HOST" >> starts; exec sleep $WQ_SLEEP\' || echo "overlap $WQ_HOST" >> starts');
  await waitFor(() => lines(join(dir, 'starts')).length === 1, 'the task to start on A');
  await serveQueue(t, queue, ['--allow-shared-commands', '--lock-duration', '2', '--kill-grace', '0.5'], { WQ_HOST: 'B', WQ_SLEEP: '0.2' });
  const waiter = wq(['wait', '--queue', queue, id]);
  a.child.kill('SIGKILL'); // its task watchdog kills the task's process group at once
  const r = await waiter;
  t.equal(r.code, 0, r.stderr);
  t.same(lines(join(dir, 'starts')), ['A', 'B'], 'ran again on B, and never while A\'s copy held the lock');
});

t.test('--fail-interrupted: the request of a killed server gets a "restarted" result instead', { skip: noRedis }, async (t) => {
  const queue = queueOn(await redisFor(t));
  const dir = t.testdir();
  const a = await serveQueue(t, queue, ['--allow-shared-commands', '--lock-duration', '2', '--kill-grace', '0.5', '--fail-interrupted']);
  const id = await enqueue(queue, dir, 'echo started >> starts; exec sleep 60');
  await waitFor(() => lines(join(dir, 'starts')).length === 1, 'the task to start');
  await serveQueue(t, queue, ['--allow-shared-commands', '--lock-duration', '2', '--kill-grace', '0.5', '--fail-interrupted']);
  const waiter = wq(['wait', '--queue', queue, '--json', id]);
  a.child.kill('SIGKILL'); // its task watchdog kills the task's process group at once
  const r = await waiter;
  t.equal(r.code, 1);
  t.match(JSON.parse(r.stdout), { error: { code: 'ERR_SERVER_RESTARTED' } });
  t.equal(lines(join(dir, 'starts')).length, 1, 'not run again');
});

/** A TCP proxy to Redis that can be cut: what a network partition does to one server. */
function proxyTo(redis: RedisServer): Promise<{ port: number; cut(): void }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(redis.port, redis.host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      resolve({
        port,
        cut() {
          server.close();
          for (const s of sockets) s.destroy();
        },
      });
    });
  });
}

t.test('a server cut off from Redis mid-task kills its task before another server may take the job: never two copies at once', { skip: noRedis }, async (t) => {
  const redis = await redisFor(t);
  const queue = queueOn(redis);
  const proxy = await proxyTo(redis);
  t.teardown(() => proxy.cut());
  const dir = t.testdir();
  const viaProxy = `redis://127.0.0.1:${proxy.port}/q`;
  const a = await serveQueue(t, viaProxy, ['--allow-shared-commands', '--lock-duration', '3', '--kill-grace', '0.5'], { WQ_HOST: 'A', WQ_SLEEP: '60' });
  const id = await enqueue(queue, dir, 'flock -n lock -c \'echo "$WQ_HOST" >> starts; exec sleep $WQ_SLEEP\' || echo "overlap $WQ_HOST" >> starts');
  await waitFor(() => lines(join(dir, 'starts')).length === 1, 'the task to start on A');
  await serveQueue(t, queue, ['--allow-shared-commands', '--lock-duration', '3', '--kill-grace', '0.5'], { WQ_HOST: 'B', WQ_SLEEP: '0.2' });
  const waiter = wq(['wait', '--queue', queue, id]);
  proxy.cut();
  const r = await waiter;
  t.equal(r.code, 0, r.stderr);
  t.same(lines(join(dir, 'starts')), ['A', 'B'], 'B ran it only after A had killed its copy');
  t.match(a.stderr(), /killed a task: its lock could not be renewed in time/, 'A says why it killed its copy');
});

t.test('a client killed mid-wait: its result is removed after --result-ttl, nothing of it is left in Redis', { skip: noRedis }, async (t) => {
  const redis = await redisFor(t);
  const queue = queueOn(redis);
  await serveQueue(t, queue, ['--allow-shared-commands', '--result-ttl', '1']);
  const client = spawnWq(['enqueue', '--queue', queue, '--wait', '--', 'sh', '-c', 'sleep 0.3; seq 1 200000']);
  let out = '';
  client.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  await waitFor(async () => JSON.parse((await wq(['status', '--queue', queue, '--json'])).stdout).counts.running === 1, 'the task to run');
  client.kill('SIGKILL');
  await exited(client);
  t.equal(out, '', 'the client died before its result');
  await waitFor(async () => JSON.parse((await wq(['status', '--queue', queue, '--json'])).stdout).counts.complete === 1, 'its result to be stored');
  await waitFor(async () => JSON.parse((await wq(['status', '--queue', queue, '--json'])).stdout).counts.complete === 0, 'its result to expire', 5000, 100);
  const { Redis } = await import('ioredis');
  const conn = new Redis({ host: redis.host, port: redis.port });
  t.teardown(() => conn.quit());
  const left = (await conn.keys('wq:q:*')).filter((k) => !k.startsWith('wq:q:servers') && !k.startsWith('wq:q:alive:'));
  t.same(left, [], 'no result, output or record of it is left');
});

t.test('--global-max-tasks holds while a killed task takes its time to die: its job is let go only once it is gone', { skip: noRedis }, async (t) => {
  const queue = queueOn(await redisFor(t));
  const dir = t.testdir();
  for (const host of ['A', 'B']) await serveQueue(t, queue, ['--allow-shared-commands', '--max-tasks', '1', '--global-max-tasks', '1', '--kill-grace', '2'], { WQ_HOST: host });
  // The task's own shell holds the slot's lock to its very end; on SIGTERM it takes 0.8 s more to exit.
  const slow = 'exec 9>slot; flock -n 9 || { echo overlap >> starts; exit 1; }; echo "slow $WQ_HOST" >> starts; trap "sleep 0.8; exit 143" TERM; sleep 30 & wait';
  const next = 'exec 9>slot; if flock -n 9; then echo "next $WQ_HOST" >> starts; else echo overlap >> starts; fi';
  const timedOut = wq(['enqueue', '--queue', queue, '--wait', '--run-timeout', '0.5', '--', 'sh', '-c', slow], { cwd: dir });
  await waitFor(() => lines(join(dir, 'starts')).length === 1, 'the slow task to start');
  const after = await wq(['enqueue', '--queue', queue, '--wait', '--', 'sh', '-c', next], { cwd: dir });
  t.equal(after.code, 0);
  t.equal((await timedOut).code, 124);
  t.same(lines(join(dir, 'starts')).map((l) => l.split(' ')[0]), ['slow', 'next'], 'the next one started only once the slow one was gone');
});
