/**
 * `wq abort ID...` and `wq abort --all`: several requests at once, exit 4 if
 * any id is unknown; --all aborts the caller's own queued and running
 * requests (by who owns their files), never another user's, and leaves
 * results already written.
 */
import { chmodSync, chownSync, mkdtempSync, readdirSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { WorkQueueClient } from '../../src/client.js';
import { openSpool } from '../../src/spool/layout.js';
import { InProcessTaskManager } from '../../src/task-manager/in-process.js';
import { inNoState, spoolContents, startCliServer, startServer, waitFor } from '../fixtures/helpers.js';
import { BLOCKER, wq } from '../fixtures/cli.js';
import { isGone, readLines } from '../fixtures/processes.js';
import { assertOtherUsersCanRunWq, isRoot, wqAs } from '../fixtures/other-users.js';

const UNKNOWN = '1700000000000000-000000000000';

async function enqueue(spool: string, command: string[], cwd?: string): Promise<string> {
  return (await wq(['enqueue', '--spool', spool, '--quiet', '--', ...command], cwd === undefined ? {} : { cwd })).stdout.trim();
}


t.test('several ids: each is aborted; exit 4 and a message for each unknown one', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  await startCliServer(t, spool);
  const running = await enqueue(spool, ['sh', '-c', BLOCKER], dir);
  const queued = await enqueue(spool, ['echo', 'never']);
  await waitFor(() => readLines(join(dir, 'blocker.pids')).length === 1, 'the first request to run');
  const [pid] = readLines(join(dir, 'blocker.pids')).map(Number);

  const r = await wq(['abort', '--spool', spool, running, UNKNOWN, queued]);
  t.equal(r.code, 4, 'an unknown id: exit 4');
  t.equal(r.stdout, '');
  t.equal(r.stderr, `wq: no request ${UNKNOWN} in the spool; the abort is kept for 10 minutes in case it is still being enqueued\n`);
  await waitFor(() => inNoState(spool, running) && inNoState(spool, queued), 'both requests to be aborted');
  await waitFor(() => isGone(pid!), 'the running one to be killed');

  const [a, b] = [await enqueue(spool, ['sh', '-c', BLOCKER], dir), await enqueue(spool, ['true'])];
  t.same(await wq(['abort', '--spool', spool, a, b]), { code: 0, signal: null, stdout: '', stderr: '' }, 'all known: exit 0, nothing said');
  await waitFor(() => inNoState(spool, a) && inNoState(spool, b), 'both aborted');
  const quiet = await wq(['abort', '--spool', spool, '--quiet', UNKNOWN, '1700000000000000-000000000001']);
  t.same({ code: quiet.code, stderr: quiet.stderr }, { code: 4, stderr: '' }, '--quiet: exit 4 without a message');
});

t.test('--all: every queued or running request of yours, not the results already written', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  await startCliServer(t, spool);
  const finished = await enqueue(spool, ['echo', 'kept']);
  await waitFor(() => spoolContents(spool).complete.includes(finished), 'the first result');
  const running = await enqueue(spool, ['sh', '-c', BLOCKER], dir);
  const queued = [await enqueue(spool, ['true']), await enqueue(spool, ['true'])];
  await waitFor(() => spoolContents(spool).running.includes(running), 'the blocker to run');

  const r = await wq(['abort', '--spool', spool, '--all']);
  t.equal(r.code, 0);
  t.equal(r.stderr, '');
  t.equal(r.stdout, [running, ...queued].map((id) => `${id}\n`).join(''), 'the ids it aborted, oldest first');
  await waitFor(() => [running, ...queued].every((id) => inNoState(spool, id)), 'all three to be aborted');
  t.same(await wq(['wait', '--spool', spool, finished]), { code: 0, signal: null, stdout: 'kept\n', stderr: '' }, 'the result is left to claim');
  t.same(await wq(['abort', '--spool', spool, '--all']), { code: 0, signal: null, stdout: '', stderr: '' }, 'nothing left: exit 0, nothing printed');

  const both = await wq(['abort', '--spool', spool, '--all', UNKNOWN]);
  t.same({ code: both.code, stderr: both.stderr }, { code: 2, stderr: 'wq: give request ids or --all, not both\n' });
  const none = await wq(['abort', '--spool', spool]);
  t.same({ code: none.code, stderr: none.stderr }, { code: 2, stderr: 'wq: give the id of a request to abort, or --all for all of yours\n' });
});

t.test('--all in a shared spool aborts only the caller\'s requests', { skip: isRoot ? false : 'needs root to act as two users' }, async (t) => {
  const spool = mkdtempSync(join(tmpdir(), 'wq-shared-'));
  t.teardown(() => rmSync(spool, { recursive: true, force: true }));
  const group = 4242;
  const [alice, bob] = [{ uid: 4301, gid: group }, { uid: 4302, gid: group }];
  chownSync(spool, 0, group);
  chmodSync(spool, 0o2755);
  openSpool(spool);
  for (const dir of ['requested', 'aborting', 'tmp']) chmodSync(join(spool, dir), 0o3777);
  if (!assertOtherUsersCanRunWq(t, alice.uid, group)) return;
  // Capacity 0: every request stays queued.
  startServer(t, new InProcessTaskManager(() => 'ran', { maxTasks: 0 }), { spool, rescanIntervalMs: 20 });
  const client = new WorkQueueClient({ spool });
  t.teardown(() => client.close());
  const enqueueAs = async (user: { uid: number; gid: number }) => (await wqAs(user, ['enqueue', '--spool', spool, '--quiet', '--', 'true'])).stdout.trim();
  const alices = [await enqueueAs(alice), await enqueueAs(alice)];
  const bobs = await enqueueAs(bob);
  const roots = await client.enqueue({ argv: ['true'] });
  await waitFor(() => [...alices, bobs, roots].every((id) => client.state(id) === 'pending'), 'all four to be admitted');

  const r = await wqAs(alice, ['abort', '--spool', spool, '--all']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, alices.map((id) => `${id}\n`).join(''), "alice's two, and only them");
  await waitFor(() => alices.every((id) => client.state(id) === undefined), "alice's requests to be aborted");
  t.equal(client.state(bobs), 'pending', "bob's request stays");
  t.equal(client.state(roots), 'pending', "root's request stays");
  await waitFor(() => readdirSync(join(spool, 'aborting')).length === 0, 'the aborts to be carried out');
  t.equal(client.state(bobs), 'pending', 'no abort was filed for the others');
});
