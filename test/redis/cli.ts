/**
 * `wq` on a queue on Redis, black-box: the real `bin/wq serve --queue
 * redis://…` and clients against a private redis-server (test/fixtures/redis.ts),
 * with the same output and exit codes as on a spool.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { BLOCKER, exited, release, wq } from '../fixtures/cli.js';
import { spawnWq, waitFor } from '../fixtures/helpers.js';
import { isGone } from '../fixtures/processes.js';
import { noRedis, queueOn, redisFor, serveQueue } from '../fixtures/redis.js';

t.test('enqueue --wait prints the output and exits with the command\'s code; a wait by id claims the result once', { skip: noRedis }, async (t) => {
  const queue = queueOn(await redisFor(t));
  const dir = t.testdir();
  await serveQueue(t, queue, ['--allow-shared-commands', '--max-tasks', '2']);
  const hi = await wq(['enqueue', '--queue', queue, '--wait', '--', 'sh', '-c', 'echo out; echo err >&2'], { cwd: dir });
  t.same([hi.code, hi.stdout, hi.stderr], [0, 'out\n', 'err\n']);
  const three = await wq(['enqueue', '--queue', queue, '--wait', '--', 'sh', '-c', 'exit 3']);
  t.equal(three.code, 3, "the command's exit code");
  const pwd = await wq(['enqueue', '--queue', queue, '--wait', '--', 'pwd'], { cwd: dir });
  t.equal(pwd.stdout.trim(), dir, 'the command runs in the client\'s directory (it exists on this host)');

  const enq = await wq(['enqueue', '--queue', queue, '--', 'echo', 'later']);
  t.equal(enq.code, 0);
  const id = enq.stdout.trim();
  t.match(id, /^\d{16}-[0-9a-f]{12}$/, 'the same ids as on a spool');
  const first = await wq(['wait', '--queue', queue, id]);
  t.same([first.code, first.stdout], [0, 'later\n']);
  const again = await wq(['wait', '--queue', queue, id]);
  t.equal(again.code, 4, 'claimed: a second wait finds it in no state');
  t.match(again.stderr, /unknown request id/);
});

t.test('WQ_QUEUE names the queue; --spool beside --queue, a wrong address, plain commands without --allow-shared-commands: usage errors', { skip: noRedis }, async (t) => {
  const queue = queueOn(await redisFor(t));
  const both = await wq(['status', '--queue', queue, '--spool', t.testdir()]);
  t.equal(both.code, 2);
  t.match(both.stderr, /--queue or --spool, not both/);
  const bad = await wq(['enqueue', '--queue', 'redis://127.0.0.1/', '--', 'true']);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /no queue name/);
  const notUrl = await wq(['status'], { env: { WQ_QUEUE: '/tmp/x' } });
  t.equal(notUrl.code, 2);
  t.match(notUrl.stderr, /\$WQ_QUEUE "\/tmp\/x": expected redis:\/\//);
  const plain = await wq(['serve', '--queue', queue]);
  t.equal(plain.code, 2, 'plain command mode on Redis: anyone who reaches Redis would run commands as this user');
  t.match(plain.stderr, /refusing to run commands from a queue on Redis/);
  const spoolOnly = await wq(['serve', '--spool', t.testdir(), '--global-max-tasks', '2']);
  t.equal(spoolOnly.code, 2);
  t.match(spoolOnly.stderr, /--global-max-tasks goes with --queue/);

  await serveQueue(t, queue, ['--exec', 'echo']);
  const viaEnv = await wq(['enqueue', '--wait', '--', 'from', 'env'], { env: { WQ_QUEUE: queue } });
  t.same([viaEnv.code, viaEnv.stdout], [0, 'from env\n'], '--exec on a queue named by WQ_QUEUE');
});

t.test('output of any size and bytes comes back whole; stdin and --env reach the command', { skip: noRedis }, async (t) => {
  const queue = queueOn(await redisFor(t));
  await serveQueue(t, queue, ['--allow-shared-commands']);
  const big = await wq(['enqueue', '--queue', queue, '--wait', '--', 'sh', '-c', 'seq 1 300000']);
  t.equal(big.code, 0);
  const expected = Array.from({ length: 300000 }, (_, i) => `${i + 1}\n`).join('');
  t.equal(big.stdout.length, expected.length, 'every byte, past what a result holds inline');
  t.equal(createHash('sha256').update(big.stdout).digest('hex'), createHash('sha256').update(expected).digest('hex'));
  const stdin = await wq(['enqueue', '--queue', queue, '--wait', '--stdin', '--env', 'WQ_T=yes', '--', 'sh', '-c', 'od -An -c; echo "$WQ_T"'], { input: 'a\u0000b' });
  t.equal(stdin.code, 0);
  t.match(stdin.stdout, /a\s+\\0\s+b/, 'a NUL byte survives');
  t.match(stdin.stdout, /yes\n$/);
  const json = await wq(['enqueue', '--queue', queue, '--wait', '--json', '--', 'printf', '\\377']);
  t.same(JSON.parse(json.stdout).stdout, { base64: '/w==' }, 'binary output, as on a spool');
});

t.test('--run-timeout: the running host kills the task and the wait exits 124', { skip: noRedis }, async (t) => {
  const queue = queueOn(await redisFor(t));
  const dir = t.testdir();
  await serveQueue(t, queue, ['--allow-shared-commands']);
  const r = await wq(['enqueue', '--queue', queue, '--wait', '--run-timeout', '0.5', '--', 'sh', '-c', 'echo $$ > pid; sleep 30'], { cwd: dir });
  t.equal(r.code, 124);
  t.match(r.stderr, /ran longer than its run timeout/);
  const pid = Number(readFileSync(join(dir, 'pid'), 'utf8'));
  await waitFor(() => isGone(pid), 'the timed-out task to be gone');
  t.pass('the task is gone');
});

t.test('abort: a queued request never starts, a running one is killed (its whole process group), a waiter exits 4', { skip: noRedis }, async (t) => {
  const queue = queueOn(await redisFor(t));
  const dir = t.testdir();
  await serveQueue(t, queue, ['--allow-shared-commands', '--max-tasks', '1']);
  const running = (await wq(['enqueue', '--queue', queue, '--', 'sh', '-c', `sleep 60 & echo $! > child; ${BLOCKER}`], { cwd: dir })).stdout.trim();
  const queued = (await wq(['enqueue', '--queue', queue, '--', 'touch', 'queued-ran'], { cwd: dir })).stdout.trim();
  await waitFor(() => existsSync(join(dir, 'blocker.pids')), 'the first request to run');
  const status = await wq(['status', '--queue', queue, '--json']);
  const snapshot = JSON.parse(status.stdout);
  t.same(snapshot.requests.map((r: { id: string; state: string }) => [r.id, r.state]), [[queued, 'pending'], [running, 'running']]);
  t.equal(snapshot.requests[0].position, 1);

  const waiter = spawnWq(['wait', '--queue', queue, running]);
  const queuedAbort = await wq(['abort', '--queue', queue, queued]);
  t.equal(queuedAbort.code, 0, 'the queued one is aborted');
  const shell = Number(readFileSync(join(dir, 'blocker.pids'), 'utf8'));
  const child = Number(readFileSync(join(dir, 'child'), 'utf8'));
  const abort = await wq(['abort', '--queue', queue, running]);
  t.equal(abort.code, 0, abort.stderr);
  await waitFor(() => isGone(shell) && isGone(child), 'the task and its background child to be killed', 1000);
  t.pass('killed within a second of the abort, background child included');
  t.equal((await exited(waiter)).code, 4, 'its waiter: in no state');
  release(dir);
  // The line moves on: a request after them runs, and the aborted one never did.
  const after = await wq(['enqueue', '--queue', queue, '--wait', '--', 'true']);
  t.equal(after.code, 0);
  t.notOk(existsSync(join(dir, 'queued-ran')), 'the aborted queued request never ran');
  const unknown = await wq(['abort', '--queue', queue, '1796000000000000-000000000000']);
  t.equal(unknown.code, 4, 'an id in no state');
});

t.test('no server: enqueue says so, abort files the abort and it wins when a server starts', { skip: noRedis }, async (t) => {
  const queue = queueOn(await redisFor(t));
  const dir = t.testdir();
  const enq = await wq(['enqueue', '--queue', queue, '--', 'touch', 'ran'], { cwd: dir });
  t.equal(enq.code, 0);
  t.match(enq.stderr, /no server/i);
  const status = await wq(['status', '--queue', queue]);
  t.match(status.stdout, /servers: none running/);
  t.match(status.stdout, /1 waiting/);
  const kept = (await wq(['enqueue', '--queue', queue, '--', 'echo', 'kept'], { cwd: dir })).stdout.trim();
  const abort = await wq(['abort', '--queue', queue, enq.stdout.trim()]);
  t.equal(abort.code, 0, 'a waiting request leaves the line at once');
  await serveQueue(t, queue, ['--allow-shared-commands']);
  const r = await wq(['wait', '--queue', queue, kept]);
  t.same([r.code, r.stdout], [0, 'kept\n']);
  t.notOk(existsSync(join(dir, 'ran')), 'the aborted request never ran');
});

t.test('SIGTERM: the server lets running tasks finish within --grace, then stops and leaves the queue', { skip: noRedis }, async (t) => {
  const queue = queueOn(await redisFor(t));
  const { child } = await serveQueue(t, queue, ['--allow-shared-commands', '--grace', '5']);
  const waiting = wq(['enqueue', '--queue', queue, '--wait', '--', 'sh', '-c', 'sleep 0.5; echo done']);
  await waitFor(async () => JSON.parse((await wq(['status', '--queue', queue, '--json'])).stdout).counts.running === 1, 'the task to run');
  child.kill('SIGTERM');
  const r = await waiting;
  t.same([r.code, r.stdout], [0, 'done\n'], 'finished within the grace period');
  t.equal((await exited(child)).code, 0, 'the server exits 0');
  const status = JSON.parse((await wq(['status', '--queue', queue, '--json'])).stdout);
  t.same(status.servers, [], 'and is no longer listed');
});
