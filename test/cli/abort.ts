/**
 * `wq abort` tells what came of the abort: carried out (exit 0), no such
 * request (exit 4), filed for a server that is not running (exit 0, said so),
 * or not acted on by a server that runs (exit 1). A refused abort (another
 * user's request on a shared spool) is in test/cli/shared.ts.
 */
import { existsSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { WorkQueueClient } from '../../src/client.js';
import { spoolContents, startCliServer, waitFor } from '../fixtures/helpers.js';
import { wq } from '../fixtures/cli.js';

const SOME_ID = '1763830000000000-0123456789ab';

t.test('wq abort of an id that is in no state: exit 4, and the abort is kept in case the request is still being published', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  await startCliServer(t, spool);
  const r = await wq(['abort', '--spool', spool, SOME_ID]);
  t.equal(r.code, 4, 'exit 4, as for any unknown id');
  t.match(r.stderr, `wq: no request ${SOME_ID} in the spool; the abort is kept for 10 minutes`);
  t.ok(existsSync(join(spool, 'aborting', SOME_ID)), 'the abort stays filed (a tombstone)');
  const quiet = await wq(['abort', '--spool', spool, '--quiet', SOME_ID]);
  t.same([quiet.code, quiet.stderr], [4, ''], 'with --quiet: exit 4, nothing said');
});

t.test('wq abort with no server running: exit 0, says the abort takes effect when a server starts; it then does', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const id = (await wq(['enqueue', '--spool', spool, '--quiet', '--', 'touch', 'ran'], { cwd: dir })).stdout.trim();
  const r = await wq(['abort', '--spool', spool, id]);
  t.equal(r.code, 0);
  t.equal(r.stderr, `wq: no server is running on spool ${spool}; the abort of ${id} takes effect when \`wq serve\` starts\n`);
  await startCliServer(t, spool);
  await waitFor(() => spoolContents(spool).aborting.length === 0, 'the server to carry out the abort');
  t.same(spoolContents(spool).requested, [], 'the request is gone');
  const w = await wq(['wait', '--spool', spool, id]);
  t.equal(w.code, 4, 'waiting for it finds nothing');
  t.notOk(existsSync(join(dir, 'ran')), 'it never ran');
});

t.test('abortAndConfirm: a server that does not act on the abort in time leaves it unconfirmed (exit 1 in wq abort)', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const server = await startCliServer(t, spool, ['--max-tasks', '1']);
  const client = new WorkQueueClient({ spool });
  t.teardown(() => client.close());
  const id = await client.enqueue({ argv: ['sh', '-c', 'exec sleep 30'], cwd: dir });
  await waitFor(() => client.state(id) === 'running', 'it to run');
  server.kill('SIGSTOP'); // a stuck server: it holds its lock, but acts on nothing
  t.teardown(() => void server.kill('SIGCONT'));
  t.equal(await client.abortAndConfirm(id, { timeoutMs: 200 }), 'unconfirmed');
  t.ok(existsSync(join(spool, 'aborting', id)), 'the abort stays filed');
  // Asked while the server is still stopped (the call looks at the spool before it first waits),
  // so the request is still there to be aborted when the server wakes and acts.
  const confirmed = client.abortAndConfirm(id);
  server.kill('SIGCONT');
  t.equal(await confirmed, 'aborted', 'a server that acts carries it out (the abort already filed counts)');
  t.equal(client.state(id), undefined);
});
