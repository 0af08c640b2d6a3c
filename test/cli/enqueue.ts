/**
 * `wq enqueue` and `wq wait`, black-box: the real bin/wq against a real
 * `wq serve` on a temp spool. Asserts stdout, stderr, exit codes and the files
 * left in the spool.
 */
import { constants } from 'node:os';
import { existsSync, readdirSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { spoolContents, startCliServer, waitFor } from '../fixtures/helpers.js';
import { startServeWith, wq } from '../fixtures/cli.js';
import { isGone, readPid } from '../fixtures/processes.js';

const ID = /^\d{16}-[0-9a-f]{12}$/;

/** A testdir with a spool in it, served by `wq serve`. */
async function served(t: Test, args: string[] = []) {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  await startCliServer(t, spool, args);
  return { dir, spool };
}

/** Every state directory, tmp/ and logs/ are empty. */
function emptySpool(spool: string): Record<string, string[]> {
  return { ...spoolContents(spool), logs: existsSync(join(spool, 'logs')) ? readdirSync(join(spool, 'logs')) : [] };
}
const EMPTY = { requested: [], pending: [], running: [], complete: [], aborting: [], tmp: [], logs: [] };

t.test('enqueue --wait prints the output and exits with the command exit code', async (t) => {
  const { spool } = await served(t);
  const hi = await wq(['enqueue', '--spool', spool, '--wait', '--', 'echo', 'hi']);
  t.same(hi, { code: 0, signal: null, stdout: 'hi\n', stderr: '' });

  const seven = await wq(['enqueue', '--spool', spool, '--wait', '--', 'sh', '-c', 'exit 7']);
  t.equal(seven.code, 7);
  t.equal(seven.stdout, '');

  const streams = await wq(['enqueue', '--spool', spool, '--wait', '--', 'sh', '-c', 'echo to-stderr >&2; echo to-stdout; exit 1']);
  t.equal(streams.code, 1, "the command's failure is its exit code");
  t.equal(streams.stdout, 'to-stdout\n');
  t.equal(streams.stderr, 'to-stderr\n', "the command's stderr passes through, alone");
  t.same(emptySpool(spool), EMPTY, 'nothing left in the spool');
});

t.test('a command killed by a signal makes wq exit 128 + the signal number', async (t) => {
  const { spool } = await served(t);
  for (const signal of ['SIGKILL', 'SIGTERM', 'SIGUSR1', 'SIGBUS'] as const) {
    const r = await wq(['enqueue', '--spool', spool, '--wait', '--', 'sh', '-c', `kill -${signal.slice(3)} $$`]);
    t.equal(r.code, 128 + constants.signals[signal], `${signal} → ${128 + constants.signals[signal]}`);
  }
});

t.test('enqueue without --wait prints the id; wq wait prints the output later and leaves nothing behind', async (t) => {
  const { spool } = await served(t);
  const enq = await wq(['enqueue', '--spool', spool, '--', 'sh', '-c', 'echo later; echo err-later >&2; exit 3']);
  t.equal(enq.code, 0);
  t.equal(enq.stderr, '');
  const lines = enq.stdout.split('\n');
  t.equal(lines.length, 2, 'one line');
  t.equal(lines[1], '', 'ending in a newline');
  const id = lines[0]!;
  t.match(id, ID);

  const waited = await wq(['wait', '--spool', spool, id]);
  t.same(waited, { code: 3, signal: null, stdout: 'later\n', stderr: 'err-later\n' });
  t.same(emptySpool(spool), EMPTY, 'no files in any state dir, tmp/ or logs/');

  const again = await wq(['wait', '--spool', spool, id]);
  t.equal(again.code, 4, 'a claimed result cannot be claimed twice');
});

t.test('a request enqueued with no server waits for one', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const enq = await wq(['enqueue', '--spool', spool, '--', 'echo', 'queued']);
  t.equal(enq.code, 0);
  t.match(enq.stderr, /no server is running/, 'a warning that nothing will run it yet');
  const id = enq.stdout.trim();
  t.match(id, ID);
  t.same(spoolContents(spool).requested, [id], 'it waits in requested/');
  await startCliServer(t, spool);
  const waited = await wq(['wait', '--spool', spool, id]);
  t.same(waited, { code: 0, signal: null, stdout: 'queued\n', stderr: '' });
});

t.test('enqueue --wait --timeout exits 124 and kills the command', async (t) => {
  const { dir, spool } = await served(t);
  // sleep 30, not 5: the sleep must be seen to die long before it would end by itself.
  const r = await wq(['enqueue', '--spool', spool, '--wait', '--timeout', '0.5', '--', 'sh', '-c', 'echo $$ > pidfile; exec sleep 30'], { cwd: dir });
  t.equal(r.code, 124);
  t.match(r.stderr, /timed out/);
  t.equal(r.stdout, '');
  const pid = readPid(join(dir, 'pidfile'));
  t.ok(pid, 'the command had started');
  await waitFor(() => isGone(pid!), `the timed-out sleep (pid ${pid}) to be killed`);
  await waitFor(() => JSON.stringify(emptySpool(spool)) === JSON.stringify(EMPTY), 'the aborted request to leave the spool');
});

t.test('WQ_SPOOL names the spool when --spool is not given', async (t) => {
  const { dir, spool } = await served(t);
  const r = await wq(['enqueue', '--wait', '--', 'echo', 'via-env'], { env: { WQ_SPOOL: spool } });
  t.same(r, { code: 0, signal: null, stdout: 'via-env\n', stderr: '' });
  const other = join(dir, 'elsewhere');
  const flagWins = await wq(['enqueue', '--wait', '--spool', spool, '--', 'echo', 'flag'], { env: { WQ_SPOOL: other } });
  t.same(flagWins, { code: 0, signal: null, stdout: 'flag\n', stderr: '' }, '--spool beats WQ_SPOOL');
});

t.test('a relative XDG_STATE_HOME is ignored, as the XDG spec says: the spool is under ~/.local/state', async (t) => {
  const dir = realpathSync(t.testdir({ home: {}, elsewhere: {} }));
  const env = { XDG_STATE_HOME: 'state', HOME: join(dir, 'home'), WQ_SPOOL: '' };
  const r = await wq(['enqueue', '--quiet', '--', 'true'], { env, cwd: join(dir, 'elsewhere') });
  t.equal(r.code, 0, r.stderr);
  t.ok(existsSync(join(dir, 'home', '.local', 'state', 'wq', 'spool', 'format')), 'the spool is $HOME/.local/state/wq/spool');
  t.notOk(existsSync(join(dir, 'elsewhere', 'state')), 'nothing under the working directory');
  const status = await wq(['status', '--json'], { env, cwd: join(dir, 'elsewhere') });
  t.equal(JSON.parse(status.stdout).spool, join(dir, 'home', '.local', 'state', 'wq', 'spool'), 'wq status looks at the same spool');
});

t.test('with neither --spool nor WQ_SPOOL the per-user spool under XDG_STATE_HOME is used', async (t) => {
  const dir = realpathSync(t.testdir());
  const env = { XDG_STATE_HOME: join(dir, 'state'), WQ_SPOOL: '' };
  const server = await startServeWith(t, [], { env });
  const expected = join(dir, 'state', 'wq', 'spool');
  t.match(server.stderr(), expected, 'the server names the spool it serves');
  const r = await wq(['enqueue', '--wait', '--', 'true'], { env });
  t.same(r, { code: 0, signal: null, stdout: '', stderr: '' }, 'no warning: the client found the server');
  t.ok(existsSync(join(expected, 'format')), 'the spool was made at $XDG_STATE_HOME/wq/spool');
});
