/**
 * Deadlines as a user sees them: timeouts longer than Node's timers can hold
 * (2^31 ms, about 24.8 days), and a run timeout judged by when the task really
 * ended, even when the server was stopped (SIGSTOP) past the deadline.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { WorkQueueClient } from '../../src/client.js';
import { startCliServer, waitFor, WQ } from '../fixtures/helpers.js';
import { captureStderr, wq } from '../fixtures/cli.js';
import { isGone, killQuietly, readPid } from '../fixtures/processes.js';

const THIRTY_DAYS_S = 30 * 24 * 3600;

async function served(t: Test, args: string[] = []): Promise<{ dir: string; spool: string; serverPid: number }> {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const server = await startCliServer(t, spool, args);
  return { dir, spool, serverPid: server.pid! };
}

t.test('timeouts of 30 days (over 2^31 ms) do not fire at once', async (t) => {
  const { spool } = await served(t);
  const run = await wq(['enqueue', '--spool', spool, '--wait', '--run-timeout', String(THIRTY_DAYS_S), '--', 'sh', '-c', 'sleep 0.3; echo done']);
  t.strictSame([run.code, run.stdout, run.stderr], [0, 'done\n', ''], '--run-timeout 2592000: the task runs to its end');
  const total = await wq(['enqueue', '--spool', spool, '--wait', '--timeout', String(THIRTY_DAYS_S), '--', 'sh', '-c', 'sleep 0.3; echo done']);
  t.strictSame([total.code, total.stdout, total.stderr], [0, 'done\n', ''], '--timeout 2592000: the client waits for the end');
  const waited = await wq(['enqueue', '--spool', spool, '--', 'sh', '-c', 'sleep 0.3; echo done']);
  const id = waited.stdout.trim();
  const later = await wq(['wait', '--spool', spool, '--timeout', String(THIRTY_DAYS_S), id]);
  t.strictSame([later.code, later.stdout, later.stderr], [0, 'done\n', ''], 'wq wait --timeout 2592000 as well');
});

t.test('a request file and library waits with deadlines far beyond 2^31 ms run to their end', async (t) => {
  const { spool } = await served(t);
  const client = new WorkQueueClient({ spool });
  t.teardown(() => client.close());
  // 10^12 ms (about 31 years): what a hand-made request file may carry.
  const id = await client.enqueue({ argv: ['sh', '-c', 'sleep 0.3; echo done'] }, { runTimeoutMs: 1e12 });
  const r = await wq(['wait', '--spool', spool, id]);
  t.strictSame([r.code, r.stdout, r.stderr], [0, 'done\n', ''], 'the server keeps a run timeout of 10^12 ms');
  const mine = await client.enqueue({ argv: ['sh', '-c', 'sleep 0.3; echo done'] });
  const value = (await client.wait(mine, { timeoutMs: 2 ** 31 })) as { exitCode: number; stdout: Uint8Array };
  t.equal(value.exitCode, 0, 'WorkQueueClient.wait({ timeoutMs: 2 ** 31 }) waits for the end');
  t.equal(Buffer.from(value.stdout).toString(), 'done\n');
});

t.test('a server stopped (SIGSTOP) past a run timeout: a task that ended in time keeps its result, one still running is timed out', async (t) => {
  const { dir, spool, serverPid } = await served(t, ['--max-tasks', '2']);
  const runTimeoutS = 6; // generous: the server must be stopped before it, on a loaded machine too
  const enqueuedAt = Date.now(); // no task starts before this: no deadline is earlier than runTimeoutS from now
  // The first task ends when told to (after the server is stopped); the second never does.
  const inTime = wq(['enqueue', '--spool', spool, '--wait', '--json', '--run-timeout', String(runTimeoutS), '--', 'sh', '-c', 'echo $$ > in-time.pid; while [ ! -e go ]; do sleep 0.02; done; echo done'], { cwd: dir });
  const overrun = wq(['enqueue', '--spool', spool, '--wait', '--json', '--run-timeout', String(runTimeoutS), '--', 'sh', '-c', 'echo $$ > overrun.pid; exec sleep 60'], { cwd: dir });
  const inTimePid = (await waitFor(() => readPid(join(dir, 'in-time.pid')), 'the first task to start'))!;
  const overrunPid = (await waitFor(() => readPid(join(dir, 'overrun.pid')), 'the second task to start'))!;
  const seenAt = Date.now(); // both started before this: their deadlines are at most runTimeoutS from now
  process.kill(serverPid, 'SIGSTOP');
  t.teardown(() => {
    killQuietly(serverPid, 'SIGCONT');
    killQuietly(overrunPid);
  });
  t.ok(Date.now() < enqueuedAt + runTimeoutS * 1000, 'the server was stopped before either deadline');
  writeFileSync(join(dir, 'go'), '');
  await waitFor(() => isGone(inTimePid), 'the first task to end while the server is stopped');
  await waitFor(() => Date.now() > seenAt + runTimeoutS * 1000 + 500, 'the run timeout to pass while the server is stopped', 30_000, 50);
  process.kill(serverPid, 'SIGCONT');
  const first = await inTime;
  t.equal(first.code, 0, 'the task that ended before its deadline: exit 0, not 124');
  t.match(JSON.parse(first.stdout), { ok: true, status: 'normal', exitCode: 0, stdout: 'done\n' });
  const second = await overrun;
  t.equal(second.code, 124, 'the task still running when the server woke: timed out');
  t.match(JSON.parse(second.stdout), { status: 'timed_out', deadline: 'run' });
  await waitFor(() => isGone(overrunPid), 'the overrunning task to be killed');
});

t.test('a server that cannot read /proc (hidden by a tmpfs) still enforces a run timeout', { skip: process.getuid?.() === 0 ? false : 'needs root to hide /proc in a mount namespace' }, async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  // A private mount namespace in which /proc is an empty tmpfs: every /proc/<pid>/stat is missing.
  const hideProc = 'mount -t tmpfs none /proc && exec "$0" "$@"';
  const child = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', hideProc, process.execPath, WQ, 'serve', '--spool', spool], { stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr = captureStderr(child);
  t.teardown(() => killQuietly(child.pid!, 'SIGKILL'));
  await waitFor(() => stderr.text().includes('server started') || child.exitCode !== null, 'wq serve to start without /proc', 30_000);
  t.equal(child.exitCode, null, `the server runs without /proc: ${stderr.text()}`);
  const r = await wq(['enqueue', '--spool', spool, '--wait', '--run-timeout', '1', '--', 'sh', '-c', 'echo $$ > task.pid; exec sleep 60'], { cwd: dir });
  t.equal(r.code, 124, 'timed out, not left to run');
  t.match(r.stderr, /ran longer than its run timeout \(--run-timeout 1 s\)/, 'says which deadline');
  const taskPid = readPid(join(dir, 'task.pid'));
  t.teardown(() => taskPid !== undefined && killQuietly(taskPid));
  t.ok(taskPid !== undefined && (await waitFor(() => isGone(taskPid), 'the task to be killed', 30_000)), 'the task was killed');
});

t.test('--timeout 0 and --run-timeout 0 leave nothing in logs/: not for a request aborted before it ran, nor for one aborted or timed out while running', async (t) => {
  const { dir, spool } = await served(t, ['--max-tasks', '2']);
  const logs = join(spool, 'logs');
  const idle = (): boolean => ['requested', 'pending', 'running', 'aborting', 'complete'].every((d) => readdirSync(join(spool, d)).length === 0);
  // Aborted at once, whether the server had started it or not.
  for (let i = 0; i < 5; i++) {
    const r = await wq(['enqueue', '--spool', spool, '--wait', '--timeout', '0', '--', 'sh', '-c', 'echo out; echo err >&2; sleep 1']);
    t.equal(r.code, 124, `--timeout 0 (${i + 1}): exit 124`);
  }
  // Timed out by the server as it starts, while it writes output.
  for (let i = 0; i < 5; i++) {
    const r = await wq(['enqueue', '--spool', spool, '--wait', '--run-timeout', '0', '--', 'seq', '1', '300000']);
    t.equal(r.code, 124, `--run-timeout 0 (${i + 1}): exit 124`);
  }
  // Aborted while it runs and has written output.
  const queued = await wq(['enqueue', '--spool', spool, '--', 'sh', '-c', 'echo out; echo err >&2; touch started; exec sleep 30'], { cwd: dir });
  const id = queued.stdout.trim();
  await waitFor(() => existsSync(join(dir, 'started')), 'the task to start and write');
  t.ok(readdirSync(logs).some((name) => name.startsWith(id)), 'while it runs, its output is in logs/');
  const timedOut = await wq(['wait', '--spool', spool, '--timeout', '0', id]);
  t.equal(timedOut.code, 124, 'wq wait --timeout 0 on a running request: exit 124');
  await waitFor(idle, 'the server to finish with every request');
  await waitFor(() => readdirSync(logs).length === 0, 'logs/ to be empty');
  t.strictSame(readdirSync(logs), [], 'nothing left in logs/');
});
