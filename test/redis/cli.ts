/**
 * What only a queue on Redis has: its address (--queue, WQ_QUEUE), and what
 * `wq serve --queue` refuses. What `wq` does alike on every backend is in
 * test/backends/.
 */
import t from 'tap';
import { wq } from '../fixtures/cli.js';
import { waitFor } from '../fixtures/helpers.js';
import { noRedis, queueOn, redisFor, serveQueue } from '../fixtures/redis.js';

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


t.test('a Redis that cannot be reached: wq says so and exits 3 within seconds, never hangs', { skip: noRedis }, async (t) => {
  const redis = await redisFor(t);
  const gone = queueOn(redis);
  await redis.stop(); // its port is free now: connections are refused
  const started = Date.now();
  for (const args of [['enqueue', '--queue', gone, '--', 'true'], ['status', '--queue', gone], ['wait', '--queue', gone, '1796000000000000-000000000000']]) {
    const r = await wq(args);
    t.equal(r.code, 3, `${args[0]}: exit 3, as for an unusable spool`);
    t.match(r.stderr, /cannot reach the Redis server of redis:\/\/127\.0\.0\.1:\d+\/q/, `${args[0]}: says which`);
  }
  t.ok(Date.now() - started < 25_000, 'each gives up after a few seconds');
});

t.test('what a server on Redis refuses: a lock duration too short for its kill grace, --allow-foreign-aborts, --durable', { skip: noRedis }, async (t) => {
  const queue = queueOn(await redisFor(t));
  const short = await wq(['serve', '--queue', queue, '--exec', 'true', '--lock-duration', '4']);
  t.equal(short.code, 2);
  t.match(short.stderr, /--lock-duration: a lock duration of 4 s leaves no time to kill a task \(kill grace 2 s\).*at least 5 s/);
  const foreign = await wq(['serve', '--queue', queue, '--exec', 'true', '--allow-foreign-aborts']);
  t.equal(foreign.code, 2);
  t.match(foreign.stderr, /whoever can reach the Redis server may abort/);
  const durable = await wq(['serve', '--queue', queue, '--exec', 'true', '--durable']);
  t.equal(durable.code, 2);
  t.match(durable.stderr, /appendonly/);
});

t.test('what is not a wq request or result is never trusted: a planted result is ignored, a foreign job is dropped unrun', { skip: noRedis }, async (t) => {
  const redis = await redisFor(t);
  const queue = queueOn(redis);
  const dir = t.testdir();
  const { Redis } = await import('ioredis');
  const { Queue } = await import('bullmq');
  const conn = new Redis({ host: redis.host, port: redis.port, maxRetriesPerRequest: null });
  const bull = new Queue('q', { connection: conn, prefix: 'wq:bullmq' });
  t.teardown(async () => {
    await bull.close();
    await conn.quit();
  });
  // A job whose id would name files on the server: dropped without running.
  await bull.add('request', { e: 'x' }, { jobId: '..-..-x' });
  const id = (await wq(['enqueue', '--queue', queue, '--', 'sh', '-c', 'sleep 0.5; echo real'], { cwd: dir })).stdout.trim();
  await conn.set(`wq:q:result:${id}`, 'not a result');
  const server = await serveQueue(t, queue, ['--allow-shared-commands']);
  const r = await wq(['wait', '--queue', queue, id]);
  t.same([r.code, r.stdout], [0, 'real\n'], 'the wait ignored the planted bytes and got the real result');
  t.match(r.stderr, /ignoring what is stored as the result of .*; still waiting/);
  t.match(server.stderr(), /dropped a job that is not a wq request/);
  t.equal(await bull.getJobState('..-..-x'), 'completed', 'the foreign job was let go, never run');
});

t.test('--metrics-port: a server on Redis records the same instruments, and its host', { skip: noRedis }, async (t) => {
  const queue = queueOn(await redisFor(t));
  const server = await serveQueue(t, queue, ['--allow-shared-commands', '--metrics-port', '0']);
  const url = (await waitFor(() => /serving metrics url=(\S+)/.exec(server.stderr())?.[1], 'the metrics URL in the log'))!;
  t.equal((await wq(['enqueue', '--queue', queue, '--wait', '--', 'true'])).code, 0);
  t.equal((await wq(['enqueue', '--queue', queue, '--wait', '--', 'false'])).code, 1);
  t.equal((await wq(['enqueue', '--queue', queue, '--wait', '--run-timeout', '0.2', '--', 'sleep', '5'])).code, 124);
  const body = await (await fetch(url)).text();
  t.match(body, /^wq_request_finished_total\{[^}]*wq_request_status="normal"[^}]*\} 2$/m, 'a command that exits 1 still ran normally');
  t.match(body, /^wq_request_finished_total\{[^}]*wq_request_status="timed_out"[^}]*\} 1$/m);
  t.match(body, /^wq_task_killed_total\{[^}]*wq_task_kill_reason="run_timeout"[^}]*\} 1$/m);
  t.match(body, /^wq_request_wait_duration_count(\{[^}]*\})? 3$/m, 'each wait timed');
  t.match(body, /^wq_request_received_total(\{[^}]*\})? 3$/m, 'each request this server took');
  t.match(body, /^wq_capacity_limit(_\w+)?(\{[^}]*\})? 1$/m);
  t.match(body, /^target_info\{[^}]*host_name="[^"]+"/m, 'which host it is');
});

t.test('wq enqueue --durable on a queue on Redis: a usage error, not a flag silently ignored', { skip: noRedis }, async (t) => {
  const queue = queueOn(await redisFor(t));
  const r = await wq(['enqueue', '--queue', queue, '--durable', '--', 'true']);
  t.equal(r.code, 2);
  t.match(r.stderr, /--durable is for a spool; on Redis, durability is the Redis server's/);
  t.equal(JSON.parse((await wq(['status', '--queue', queue, '--json'])).stdout).counts.pending, 0, 'nothing was enqueued');
});
