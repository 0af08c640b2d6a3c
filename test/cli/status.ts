/**
 * `wq status`: the text view and `--json`, `wq status ID` in every state,
 * unknown and invalid ids, `--all`, and the pid of a running command.
 * Black-box: the real bin/wq, a real `wq serve` child, a temp spool.
 */
import { existsSync, realpathSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { WorkQueueClient } from '../../src/client.js';
import { spoolContents, startCliServer, waitFor } from '../fixtures/helpers.js';
import { openGate, rerunAfterRestart, waitGate, wq } from '../fixtures/gates.js';
import { readPid } from '../fixtures/processes.js';
import { deadPid } from '../fixtures/processes.js';

const ID = /^\d{16}-[0-9a-f]{12}$/;

interface StatusJson {
  spool: string;
  server: { pid: number; host: string; startedAt: number; uptimeSeconds: number; maxTasks: number | null; alive: boolean } | null;
  counts: Record<string, number>;
  requests: RequestJson[];
}

interface RequestJson {
  id: string;
  state: string;
  position?: number;
  runningSeconds?: number;
  pid?: number;
  waitingSeconds?: number;
  aborting?: boolean;
  heldBy?: Record<string, unknown>;
}

async function statusJson(t: Test, spool: string): Promise<StatusJson>;
async function statusJson(t: Test, spool: string, id: string): Promise<RequestJson>;
async function statusJson(t: Test, spool: string, ...args: string[]): Promise<unknown> {
  const r = await wq(['status', '--spool', spool, '--json', ...args]);
  t.equal(r.code, 0, 'wq status --json exits 0');
  t.equal(r.stderr, '', 'and says nothing on stderr');
  return JSON.parse(r.stdout);
}

async function enqueue(spool: string, argv: string[]): Promise<string> {
  const r = await wq(['enqueue', '--spool', spool, '--quiet', '--', ...argv]);
  if (r.code !== 0 || !ID.test(r.stdout.trim())) throw new Error(`wq enqueue failed (${r.code}): ${r.stdout} ${r.stderr}`);
  return r.stdout.trim();
}

t.test('no server: requested entries, in text and JSON', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  const a = await enqueue(spool, ['true']);
  const b = await enqueue(spool, ['true']);

  const json = await statusJson(t, spool);
  t.equal(json.spool, spool);
  t.equal(json.server, null, 'server is null when none runs');
  t.strictSame(
    json.requests.map(({ id, state, position }) => ({ id, state, position })),
    [
      { id: a, state: 'requested', position: 1 },
      { id: b, state: 'requested', position: 2 },
    ],
  );
  t.match(json.counts, { requested: 2, pending: 0, running: 0, complete: 0, aborting: 0 });

  const text = await wq(['status', '--spool', spool]);
  t.equal(text.code, 0);
  t.equal(text.stderr, '');
  t.match(text.stdout, `spool:   ${spool}\n`);
  t.match(text.stdout, 'server:  none running (requests wait until `wq serve` starts)\n');
  t.match(text.stdout, 'queue:   2 waiting, 0 running, 0 results to claim\n');
  t.match(text.stdout, `waiting: no server is running\n  ${a} queued #1 of 2\n  ${b} queued #2 of 2\n`);
  t.notMatch(text.stdout, 'running:');

  const one = await wq(['status', '--spool', spool, b]);
  t.strictSame(one, { code: 0, signal: null, stdout: `${b} queued #2 of 2: no server is running\n`, stderr: '' });
  const oneJson = await statusJson(t, spool, a);
  t.match(oneJson, { id: a, state: 'requested', position: 1 });

  const aborted = await wq(['abort', '--spool', spool, a]);
  t.equal(aborted.code, 0);
  t.equal((await wq(['status', '--spool', spool, a])).stdout, `${a} queued #1 of 2 (aborting): no server is running\n`, 'a filed abort is shown');
  t.match(await statusJson(t, spool, a), { aborting: true });
  t.match((await wq(['status', '--spool', spool])).stdout, ', 1 abort pending\n');
});

t.test('a served spool: pending, running (with the command pid), complete, then unknown', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const gate = join(dir, 'go');
  const pidFile = join(dir, 'running.pid');
  t.teardown(() => openGate(gate));
  const server = await startCliServer(t, spool, ['--max-tasks', '1']);

  const running = await enqueue(spool, ['sh', '-c', `echo $$ > ${pidFile}; ${waitGate(gate)}; echo finished`]);
  const commandPid = await waitFor(() => readPid(pidFile), 'the command to write its pid');
  const pending = await enqueue(spool, ['echo', 'second']);
  await waitFor(() => spoolContents(spool).pending.includes(pending), 'the second request to be admitted');
  await waitFor(async () => (await statusJson(t, spool, pending)).heldBy !== undefined, 'the server to say what holds it');

  const json = await statusJson(t, spool);
  t.match(json.server, { pid: server.pid, host: hostname(), maxTasks: 1, alive: true }, 'the server field names the serving process');
  t.type(json.server?.uptimeSeconds, 'number');
  t.strictSame(
    json.requests.map(({ id, state }) => ({ id, state })),
    [
      { id: pending, state: 'pending' },
      { id: running, state: 'running' },
    ],
    'waiting first, then running',
  );
  const runningEntry = json.requests.find((r) => r.id === running)!;
  t.equal(runningEntry.pid, commandPid, "the running command's own pid");
  t.type(runningEntry.runningSeconds, 'number');
  t.equal(json.requests.find((r) => r.id === pending)?.position, 1);
  t.ok(json.requests.every((r) => ['requested', 'pending', 'running', 'complete'].includes(r.state)));

  const text = await wq(['status', '--spool', spool]);
  t.equal(text.code, 0);
  t.match(text.stdout, new RegExp(`server:  pid ${server.pid} on ${hostname().replace(/\W/g, '\\$&')}, up \\d+s, max tasks 1\\n`));
  t.match(text.stdout, 'queue:   1 waiting, 1 running, 0 results to claim\n');
  t.match(text.stdout, new RegExp(`running:\\n  ${running} running for \\d+s \\(pid ${commandPid}\\)\\n`));
  t.match(text.stdout, `waiting: capacity full (1 of 1 running)\n  ${pending} queued #1 of 1\n`);

  const pendingOne = await wq(['status', '--spool', spool, pending]);
  t.strictSame(pendingOne, { code: 0, signal: null, stdout: `${pending} queued #1 of 1: capacity full (1 of 1 running)\n`, stderr: '' });
  const runningOne = await wq(['status', '--spool', spool, running]);
  t.equal(runningOne.code, 0);
  t.match(runningOne.stdout, new RegExp(`^${running} running for \\d+s \\(pid ${commandPid}\\)\\n$`));
  t.match(await statusJson(t, spool, running), { id: running, state: 'running', pid: commandPid });

  openGate(gate);
  await waitFor(() => spoolContents(spool).complete.length === 2, 'both results');
  const completeOne = await wq(['status', '--spool', spool, running]);
  t.equal(completeOne.code, 0);
  t.match(completeOne.stdout, new RegExp(`^${running} complete; result waiting to be claimed for \\d+s\\n$`));
  const completeJson = await statusJson(t, spool, running);
  t.match(completeJson, { id: running, state: 'complete' });
  t.type(completeJson.waitingSeconds, 'number');
  t.notOk('pid' in completeJson, 'a finished command has no pid');
  const all = await wq(['status', '--spool', spool]);
  t.match(all.stdout, 'queue:   0 waiting, 0 running, 2 results to claim\n');
  t.match(all.stdout, /results:\n {2}\S+ complete; .*\n {2}\S+ complete; /);

  const claimed = await wq(['wait', '--spool', spool, running]);
  t.equal(claimed.code, 0);
  t.equal(claimed.stdout, 'finished\n');
  const unknown = await wq(['status', '--spool', spool, running]);
  t.equal(unknown.code, 4, 'a claimed result is an unknown id: exit 4');
  t.equal(unknown.stdout, '');
  t.equal(unknown.stderr, `wq: unknown request id ${running}: it is in no state of the spool\n`);
  const unknownJson = await wq(['status', '--spool', spool, '--json', running]);
  t.equal(unknownJson.code, 4);
  t.strictSame(JSON.parse(unknownJson.stdout), { id: running, state: 'unknown' });
});

t.test('counts read 1 result, 1 abort; only aborts of listed requests count; seconds are given to the millisecond', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const gate = join(dir, 'go');
  t.teardown(() => openGate(gate));
  const a = await enqueue(spool, ['true']);
  const b = await enqueue(spool, ['true']);
  t.equal((await wq(['abort', '--spool', spool, '--quiet', a])).code, 0);
  const unknownId = '1763830000000000-0123456789ab';
  t.equal((await wq(['abort', '--spool', spool, '--quiet', unknownId])).code, 4, 'an abort for an id in no state, kept as a tombstone');
  t.match((await wq(['status', '--spool', spool])).stdout, 'queue:   2 waiting, 0 running, 0 results to claim, 1 abort pending\n', 'the tombstone is not counted');
  t.equal((await statusJson(t, spool)).counts.aborting, 1);

  await startCliServer(t, spool, ['--max-tasks', '1']);
  await waitFor(() => spoolContents(spool).complete.includes(b), "b's result");
  const running = await enqueue(spool, ['sh', '-c', waitGate(gate)]);
  await waitFor(() => spoolContents(spool).running.includes(running), 'it to run');
  t.ok(spoolContents(spool).aborting.includes(unknownId), 'the tombstone is still filed');
  const text = (await wq(['status', '--spool', spool])).stdout;
  t.match(text, 'queue:   0 waiting, 1 running, 1 result to claim\n', 'one result, singular; no abort pending');
  const json = await statusJson(t, spool);
  t.equal(json.counts.aborting, 0);
  const seconds = [json.server!.uptimeSeconds, json.requests.find((r) => r.id === running)!.runningSeconds!, json.requests.find((r) => r.id === b)!.waitingSeconds!];
  for (const s of seconds) t.match(String(s), /^\d+(\.\d{1,3})?$/, `${s}: to the millisecond`);
  openGate(gate);
});

t.test('a request re-run after a server restart shows the pid of the re-run', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const { id, pids, gate } = await rerunAfterRestart(t, dir, spool);
  const json = await statusJson(t, spool, id);
  t.match(json, { id, state: 'running' });
  t.equal(json.pid, pids[1], 'the running command is the re-run, not the terminated first run');
  const text = await wq(['status', '--spool', spool, id]);
  t.match(text.stdout, `(pid ${pids[1]})`);
  openGate(gate);
  const done = await wq(['wait', '--spool', spool, id]);
  t.equal(done.stdout, `run ${pids[1]}\nfinished\n`, 'the result is the re-run\'s');
});

t.test('ids: never enqueued is unknown (4), malformed is a usage error (2)', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  await enqueue(spool, ['true']);
  const never = await wq(['status', '--spool', spool, '1700000000000000-0123456789ab']);
  t.equal(never.code, 4);
  t.match(never.stderr, 'unknown request id 1700000000000000-0123456789ab');
  for (const bad of ['nope', '1700000000000000-0123456789AB', '../../etc/passwd', '1700000000000000-0123456789ab.stdout']) {
    const r = await wq(['status', '--spool', spool, bad]);
    t.equal(r.code, 2, `${JSON.stringify(bad)}: exit 2`);
    t.match(r.stderr, `"${bad}" is not a request id`);
    t.equal(r.stdout, '');
  }
});

t.test('--all lists every request; the text view stops at 20 without it', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  // Setup through the library (25 CLI runs would only be slower); the assertions are on bin/wq.
  const client = new WorkQueueClient({ spool });
  const ids: string[] = [];
  for (let i = 0; i < 25; i++) ids.push(await client.enqueue({ argv: ['true'] }));

  const short = await wq(['status', '--spool', spool]);
  t.equal(short.code, 0);
  const shortRows = short.stdout.split('\n').filter((l) => / queued #\d+ of 25$/.test(l));
  t.strictSame(shortRows, ids.slice(0, 20).map((id, i) => `  ${id} queued #${i + 1} of 25`), 'the first 20, in line order');
  t.match(short.stdout, '  … and 5 more (--all lists them)\n');

  for (const flag of ['--all', '-a']) {
    const full = await wq(['status', '--spool', spool, flag]);
    t.equal(full.code, 0);
    const rows = full.stdout.split('\n').filter((l) => / queued #\d+ of 25$/.test(l));
    t.strictSame(rows, ids.map((id, i) => `  ${id} queued #${i + 1} of 25`), `${flag}: all 25`);
    t.notMatch(full.stdout, 'more (--all');
  }

  const json = await statusJson(t, spool);
  t.equal(json.requests.length, 25, '--json always lists everything');
});

t.test('a stale lock: the text view says the server is gone', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  await enqueue(spool, ['true']);
  const dead = deadPid();
  writeFileSync(join(spool, 'server.lock'), JSON.stringify({ pid: dead, host: hostname(), startedAt: Date.now(), info: { maxTasks: 4 } }));
  const text = await wq(['status', '--spool', spool]);
  t.equal(text.code, 0);
  t.match(text.stdout, `server:  none running (lock left by pid ${dead}, which no longer holds it; the next \`wq serve\` takes over)\n`);
  const json = await statusJson(t, spool);
  t.match(json.server, { pid: dead, alive: false, maxTasks: 4 });
});

t.test('a spool that does not exist: exit 3, nothing created', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'missing');
  const r = await wq(['status', '--spool', spool]);
  t.equal(r.code, 3);
  t.match(r.stderr, `spool ${spool} does not exist`);
  t.notOk(existsSync(spool));
});
