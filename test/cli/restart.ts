/**
 * A server killed with SIGKILL loses nothing: the next `wq serve` on the spool
 * re-runs what was running (or fails it with --fail-interrupted) and runs what
 * was queued, in order.
 */
import { realpathSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { spoolContents, startCliServer, waitFor } from '../fixtures/helpers.js';
import { BLOCKER, exited, release, wq } from '../fixtures/cli.js';
import { readLines } from '../fixtures/processes.js';

async function enqueue(spool: string, dir: string, argv: string[]): Promise<string> {
  const r = await wq(['enqueue', '--spool', spool, '--', ...argv], { cwd: dir });
  if (r.code !== 0) throw new Error(`wq enqueue failed (${r.code}): ${r.stderr}`);
  return r.stdout.trim();
}

t.test('kill -9 of the server with requests queued: after a restart all of them complete, in order', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const server = await startCliServer(t, spool, ['--max-tasks', '1']);
  const first = await enqueue(spool, dir, ['sh', '-c', BLOCKER]);
  await waitFor(() => readLines(join(dir, 'blocker.pids')).length === 1, 'the blocking request to run');
  const queued: string[] = [];
  for (let n = 1; n <= 5; n++) queued.push(await enqueue(spool, dir, ['sh', '-c', `echo ${n} >> order; echo ${n}`]));
  await waitFor(() => spoolContents(spool).pending.length === 5, 'the server to queue all five');

  server.kill('SIGKILL');
  t.same(await exited(server), { code: null, signal: 'SIGKILL' });
  t.same(spoolContents(spool).running, [first, `${first}.proc`], 'the running request is left in running/, with its task\'s process record');

  await startCliServer(t, spool, ['--max-tasks', '1']);
  await waitFor(() => readLines(join(dir, 'blocker.pids')).length === 2, 'the interrupted request to run again');
  release(dir);
  const results = await Promise.all([first, ...queued].map((id) => wq(['wait', '--spool', spool, id])));
  t.same(
    results.map((r) => [r.code, r.stdout]),
    [[0, 'first\n'], ...queued.map((_, i) => [0, `${i + 1}\n`])],
    'every request completes with its own output',
  );
  t.same(readLines(join(dir, 'order')), ['1', '2', '3', '4', '5'], 'the queued ones ran in enqueue order');
  t.same(spoolContents(spool), { requested: [], pending: [], running: [], complete: [], aborting: [], tmp: [] }, 'nothing left behind');
});

t.test('--fail-interrupted: the request that was running gets a "server restarted" error instead', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const server = await startCliServer(t, spool);
  const id = await enqueue(spool, dir, ['sh', '-c', BLOCKER]);
  await waitFor(() => readLines(join(dir, 'blocker.pids')).length === 1, 'the request to run');
  server.kill('SIGKILL');
  await exited(server);

  await startCliServer(t, spool, ['--fail-interrupted']);
  const r = await wq(['wait', '--spool', spool, id]);
  t.equal(r.code, 1);
  t.match(r.stderr, /server restarted/);
  t.equal(r.stdout, '');
  t.equal(readLines(join(dir, 'blocker.pids')).length, 1, 'it was not run again');
  const after = await wq(['enqueue', '--spool', spool, '--wait', '--', 'echo', 'next']);
  t.same([after.code, after.stdout], [0, 'next\n'], 'the restarted server serves new requests');
});
