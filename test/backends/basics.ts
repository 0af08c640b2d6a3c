/**
 * What `wq` does the same on every backend (test/fixtures/backends.ts): each
 * test runs on a spool and on a queue on Redis, through the real `bin/wq`.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BLOCKER, exited, release, wq } from '../fixtures/cli.js';
import { forEachBackend } from '../fixtures/backends.js';
import { spawnWq, waitFor } from '../fixtures/helpers.js';
import { isGone } from '../fixtures/processes.js';

const WAITING = new Set(['requested', 'pending']);

forEachBackend('enqueue --wait prints the output and exits with the command\'s code; a wait by id claims the result once', async (t, q) => {
  const dir = t.testdir();
  await q.serve(['--max-tasks', '2']);
  const hi = await wq(['enqueue', ...q.flags, '--wait', '--', 'sh', '-c', 'echo out; echo err >&2'], { cwd: dir });
  t.same([hi.code, hi.stdout, hi.stderr], [0, 'out\n', 'err\n']);
  const three = await wq(['enqueue', ...q.flags, '--wait', '--', 'sh', '-c', 'exit 3']);
  t.equal(three.code, 3, "the command's exit code");
  const pwd = await wq(['enqueue', ...q.flags, '--wait', '--', 'pwd'], { cwd: dir });
  t.equal(pwd.stdout.trim(), dir, "the command runs in the client's directory");
  const viaEnv = await wq(['enqueue', '--wait', '--', 'echo', 'named by the environment'], { env: q.env });
  t.same([viaEnv.code, viaEnv.stdout], [0, 'named by the environment\n']);

  const enq = await wq(['enqueue', ...q.flags, '--', 'echo', 'later']);
  t.equal(enq.code, 0);
  const id = enq.stdout.trim();
  t.match(id, /^\d{16}-[0-9a-f]{12}$/);
  const first = await wq(['wait', ...q.flags, id]);
  t.same([first.code, first.stdout], [0, 'later\n']);
  const again = await wq(['wait', ...q.flags, id]);
  t.equal(again.code, 4, 'claimed: a second wait finds it in no state');
  t.match(again.stderr, /unknown request id/);
});

forEachBackend('output of any size and bytes comes back whole; stdin and --env reach the command; --json', async (t, q) => {
  await q.serve();
  const big = await wq(['enqueue', ...q.flags, '--wait', '--', 'sh', '-c', 'seq 1 300000']);
  t.equal(big.code, 0);
  const expected = Array.from({ length: 300000 }, (_, i) => `${i + 1}\n`).join('');
  t.equal(big.stdout.length, expected.length, 'every byte, past what a result holds inline');
  t.equal(createHash('sha256').update(big.stdout).digest('hex'), createHash('sha256').update(expected).digest('hex'));
  const stdin = await wq(['enqueue', ...q.flags, '--wait', '--stdin', '--env', 'WQ_T=yes', '--', 'sh', '-c', 'od -An -c; echo "$WQ_T"'], { input: 'a\u0000b' });
  t.equal(stdin.code, 0);
  t.match(stdin.stdout, /a\s+\\0\s+b/, 'a NUL byte survives');
  t.match(stdin.stdout, /yes\n$/);
  const json = await wq(['enqueue', ...q.flags, '--wait', '--json', '--', 'printf', '\\377']);
  t.match(JSON.parse(json.stdout), { exitCode: 0, ok: true, status: 'normal', stdout: { base64: '/w==' } }, 'binary output as base64');
});

forEachBackend('--run-timeout: the task is killed and the wait exits 124', async (t, q) => {
  const dir = t.testdir();
  await q.serve();
  const r = await wq(['enqueue', ...q.flags, '--wait', '--run-timeout', '0.5', '--', 'sh', '-c', 'echo $$ > pid; sleep 30'], { cwd: dir });
  t.equal(r.code, 124);
  t.match(r.stderr, /ran longer than its run timeout/);
  const pid = Number(readFileSync(join(dir, 'pid'), 'utf8'));
  await waitFor(() => isGone(pid), 'the timed-out task to be gone');
  t.pass('the task is gone');
});

forEachBackend('--timeout: the wait gives up, exits 124 and aborts the request', async (t, q) => {
  const dir = t.testdir();
  await q.serve();
  const r = await wq(['enqueue', ...q.flags, '--wait', '--timeout', '0.5', '--', 'sh', '-c', 'echo $$ > pid; sleep 30'], { cwd: dir });
  t.equal(r.code, 124);
  t.match(r.stderr, /timed out after 0\.5 s \(--timeout\).*aborted/);
  await waitFor(() => existsSync(join(dir, 'pid')) && isGone(Number(readFileSync(join(dir, 'pid'), 'utf8'))), 'the task to be killed');
  const status = JSON.parse((await wq(['status', ...q.flags, '--json'])).stdout);
  t.same(status.requests, [], 'nothing of it is left');
});

forEachBackend('abort: a queued request never starts, a running one is killed with its process group, its waiter exits 4', async (t, q) => {
  const dir = t.testdir();
  await q.serve(['--max-tasks', '1']);
  const running = (await wq(['enqueue', ...q.flags, '--', 'sh', '-c', `sleep 60 & echo $! > child; ${BLOCKER}`], { cwd: dir })).stdout.trim();
  const queued = (await wq(['enqueue', ...q.flags, '--', 'touch', 'queued-ran'], { cwd: dir })).stdout.trim();
  await waitFor(() => existsSync(join(dir, 'blocker.pids')) && existsSync(join(dir, 'child')), 'the first request to run');
  const snapshot = JSON.parse((await wq(['status', ...q.flags, '--json'])).stdout);
  const states = new Map<string, { state: string; position?: number }>(snapshot.requests.map((r: { id: string }) => [r.id, r]));
  t.equal(states.get(running)?.state, 'running');
  t.ok(WAITING.has(states.get(queued)?.state ?? ''), 'the second waits');
  t.equal(states.get(queued)?.position, 1, 'first in line');

  const waiter = spawnWq(['wait', ...q.flags, running]);
  t.equal((await wq(['abort', ...q.flags, queued])).code, 0, 'the queued one is aborted');
  const shell = Number(readFileSync(join(dir, 'blocker.pids'), 'utf8'));
  const child = Number(readFileSync(join(dir, 'child'), 'utf8'));
  const abort = await wq(['abort', ...q.flags, running]);
  t.equal(abort.code, 0, abort.stderr);
  await waitFor(() => isGone(shell) && isGone(child), 'the task and its background child to be killed', 2000);
  t.pass('killed, background child included');
  t.equal((await exited(waiter)).code, 4, 'its waiter: in no state');
  release(dir);
  t.equal((await wq(['enqueue', ...q.flags, '--wait', '--', 'true'])).code, 0, 'the line moves on');
  t.notOk(existsSync(join(dir, 'queued-ran')), 'the aborted queued request never ran');
  const unknown = await wq(['abort', ...q.flags, '1796000000000000-000000000000']);
  t.equal(unknown.code, 4, 'an id in no state');
  t.match(unknown.stderr, /no request 1796000000000000-000000000000 in the (spool|queue); the abort is kept for 10 minutes/);
});

forEachBackend('no server: enqueue and abort say so; an abort filed then wins when a server starts', async (t, q) => {
  const dir = t.testdir();
  const enq = await wq(['enqueue', ...q.flags, '--', 'touch', 'ran'], { cwd: dir });
  t.equal(enq.code, 0);
  t.equal(enq.stderr, `wq: no server is running on ${q.where}; the request stays queued until \`wq serve\` starts\n`);
  const status = JSON.parse((await wq(['status', ...q.flags, '--json'])).stdout);
  t.equal(status.server, null);
  t.equal(status.counts.requested + status.counts.pending, 1);
  const kept = (await wq(['enqueue', ...q.flags, '--quiet', '--', 'echo', 'kept'], { cwd: dir })).stdout.trim();
  const abort = await wq(['abort', ...q.flags, enq.stdout.trim()]);
  t.equal(abort.code, 0);
  await q.serve();
  const r = await wq(['wait', ...q.flags, kept]);
  t.same([r.code, r.stdout], [0, 'kept\n']);
  t.notOk(existsSync(join(dir, 'ran')), 'the aborted request never ran');
});

forEachBackend('SIGTERM: the server lets a running task finish within --grace, then exits 0', async (t, q) => {
  const { child } = await q.serve(['--grace', '5']);
  const waiting = wq(['enqueue', ...q.flags, '--wait', '--', 'sh', '-c', 'sleep 0.5; echo done']);
  await waitFor(async () => JSON.parse((await wq(['status', ...q.flags, '--json'])).stdout).counts.running === 1, 'the task to run');
  child.kill('SIGTERM');
  const r = await waiting;
  t.same([r.code, r.stdout], [0, 'done\n'], 'finished within the grace period');
  t.equal((await exited(child)).code, 0, 'the server exits 0');
  t.equal(JSON.parse((await wq(['status', ...q.flags, '--json'])).stdout).server, null, 'no server is listed');
});
