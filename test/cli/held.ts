/**
 * What holds a request, as `wq status` (text and --json) and `wq wait` say it:
 * no server, full capacity, a load above --max-load, and a request whose
 * server died while it ran (interrupted: no pid of a task that is gone, the
 * pids of one that still lives). Black-box: the real bin/wq, real servers.
 */
import { realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { ROOT, startCliServer, waitFor } from '../fixtures/helpers.js';
import { exited, startServeWith, wq } from '../fixtures/cli.js';
import { openGate, sq, waitGate } from '../fixtures/gates.js';
import { isGone, killQuietly, killWithWatchdog, readPid } from '../fixtures/processes.js';

interface RequestJson {
  id: string;
  state: string;
  position?: number;
  heldBy?: Record<string, unknown>;
  pid?: number;
  interrupted?: boolean;
  survivingPids?: number[];
}

async function enqueue(spool: string, argv: string[]): Promise<string> {
  const r = await wq(['enqueue', '--spool', spool, '--quiet', '--', ...argv]);
  if (r.code !== 0) throw new Error(`wq enqueue failed (${r.code}): ${r.stderr}`);
  return r.stdout.trim();
}

async function statusOf(t: Test, spool: string, id: string): Promise<{ text: string; json: RequestJson }> {
  const text = await wq(['status', '--spool', spool, id]);
  const json = await wq(['status', '--spool', spool, '--json', id]);
  t.equal(text.code, 0, 'wq status ID exits 0');
  t.equal(json.code, 0, 'wq status --json ID exits 0');
  return { text: text.stdout, json: JSON.parse(json.stdout) as RequestJson };
}

/** Polls `wq status --json ID` until `ready` holds for it (the server publishes what holds its line at its next tick). */
async function statusWhen(spool: string, id: string, ready: (r: RequestJson) => boolean, what: string): Promise<RequestJson> {
  return waitFor<RequestJson | undefined>(async () => {
    const r = await wq(['status', '--spool', spool, '--json', id]);
    const json = r.code === 0 ? (JSON.parse(r.stdout) as RequestJson) : undefined;
    return json !== undefined && ready(json) ? json : undefined;
  }, what) as Promise<RequestJson>;
}

t.test('no server: wq wait says so, and status says it is what holds the request', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  const id = await enqueue(spool, ['true']);

  const { text, json } = await statusOf(t, spool, id);
  t.equal(text, `${id} queued #1 of 1: no server is running\n`);
  t.strictSame(json.heldBy, { reason: 'no-server' });
  const list = await wq(['status', '--spool', spool]);
  t.match(list.stdout, `\nwaiting: no server is running\n  ${id} queued #1 of 1\n`, 'the list says it once, for the whole line');

  const waited = await wq(['wait', '--spool', spool, '--timeout', '0.3', id]);
  t.equal(waited.code, 124, 'the wait still times out');
  t.equal(
    waited.stderr,
    `wq: no server is running on spool ${spool}; the request stays queued until \`wq serve\` starts\n` +
      `wq: timed out after 0.3 s (--timeout) waiting for ${id}; the request was aborted\n`,
    'but first says that no server runs',
  );

  const other = await enqueue(spool, ['true']);
  const quiet = await wq(['wait', '--spool', spool, '--quiet', '--timeout', '0.3', other]);
  t.strictSame({ code: quiet.code, stderr: quiet.stderr }, { code: 124, stderr: '' }, '--quiet: no warning');
});

t.test('a full server: capacity full, for the text view, the one-line view and --json', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const gate = join(dir, 'go');
  t.teardown(() => openGate(gate));
  await startCliServer(t, spool, ['--max-tasks', '1']);
  await enqueue(spool, ['sh', '-c', waitGate(gate)]);
  const id = await enqueue(spool, ['echo', 'second']);

  const json = await statusWhen(spool, id, (r) => r.heldBy !== undefined, 'the server to say what holds the second request');
  t.strictSame(json.heldBy, { reason: 'capacity', maxTasks: 1 });
  t.match(json, { state: 'pending', position: 1 });
  const { text } = await statusOf(t, spool, id);
  t.equal(text, `${id} queued #1 of 1: capacity full (1 of 1 running)\n`);
  const list = await wq(['status', '--spool', spool]);
  t.match(list.stdout, `\nwaiting: capacity full (1 of 1 running)\n  ${id} queued #1 of 1\n`);

  openGate(gate);
  const done = await wq(['wait', '--spool', spool, id]);
  t.strictSame({ code: done.code, stdout: done.stdout, stderr: done.stderr }, { code: 0, stdout: 'second\n', stderr: '' }, 'no warning: a server runs');
});

t.test('--max-load: the load average is what holds the request, until it drops', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const loadFile = join(dir, 'load');
  writeFileSync(loadFile, '5');
  const env = { NODE_OPTIONS: `--require ${join(ROOT, 'test', 'fixtures', 'fake-load.cjs')}`, WQ_FAKE_LOAD_FILE: loadFile };
  await startServeWith(t, ['--spool', spool, '--max-load', '2'], { env });
  const id = await enqueue(spool, ['echo', 'ran']);

  const json = await statusWhen(spool, id, (r) => r.heldBy !== undefined, 'the server to say what holds the request');
  t.strictSame(json.heldBy, { reason: 'load', load: 5, maxLoad: 2 });
  const { text } = await statusOf(t, spool, id);
  t.equal(text, `${id} queued #1 of 1: load average 5 is not below --max-load 2\n`);

  writeFileSync(loadFile, '0.5');
  const done = await wq(['wait', '--spool', spool, id]);
  t.equal(done.code, 0);
  t.equal(done.stdout, 'ran\n', 'it runs once the load drops');
});

/** sh code: records its pid in `pidFile`, starts a background worker in its process group (its pid in `workerFile`), waits for it. */
function taskWithWorker(pidFile: string, workerFile: string): string {
  return `echo $$ > ${sq(pidFile)}; sleep 120 & echo $! > ${sq(workerFile)}; wait`;
}

t.test('a server killed while a request runs: interrupted, with no pid of a task that is gone', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const pidFile = join(dir, 'task.pid');
  const workerFile = join(dir, 'worker.pid');
  const server = await startCliServer(t, spool);
  const id = await enqueue(spool, ['sh', '-c', taskWithWorker(pidFile, workerFile)]);
  const pid = (await waitFor(() => readPid(pidFile), 'the task to start'))!;
  t.teardown(() => killQuietly(-pid));
  const worker = (await waitFor(() => readPid(workerFile), 'the task to start its worker'))!;
  t.match((await statusOf(t, spool, id)).json, { state: 'running', pid }, 'while served: running, with its pid');

  killWithWatchdog(server); // and its task watchdog, which would kill the whole group
  await exited(server);
  // As if the task had died on its own; its worker, a grandchild, outlives it.
  killQuietly(pid);
  await waitFor(() => isGone(pid), 'the task itself to be gone');

  let { text, json } = await statusOf(t, spool, id);
  t.match(json, { state: 'running', interrupted: true }, 'interrupted');
  t.strictSame(json.survivingPids, [worker], 'the worker that still lives is named');
  t.notOk('pid' in json, 'no pid: the task it named is gone');
  t.equal(text, `${id} interrupted: no server is running; it runs again when \`wq serve\` starts (or fails, with --fail-interrupted); its task still runs (pid ${worker}) and is killed first\n`);

  killQuietly(-pid);
  await waitFor(() => isGone(worker), 'the worker to be killed');
  ({ text, json } = await statusOf(t, spool, id));
  t.strictSame({ interrupted: json.interrupted, pid: json.pid, survivingPids: json.survivingPids }, { interrupted: true, pid: undefined, survivingPids: undefined }, 'nothing of it lives: no pid at all');
  t.equal(text, `${id} interrupted: no server is running; it runs again when \`wq serve\` starts (or fails, with --fail-interrupted)\n`);
  t.notMatch((await wq(['status', '--spool', spool])).stdout, `pid ${pid}`, 'the list claims no pid either');

  const waited = await wq(['wait', '--spool', spool, '--timeout', '0.3', id]);
  t.equal(waited.code, 124);
  t.match(waited.stderr, `wq: no server is running on spool ${spool}; the request was interrupted and runs again when \`wq serve\` starts\n`);
});
