/**
 * `wq wait ID...`: every request is waited for at once (a result is claimed
 * as soon as it is written), outcomes print in the order given, the exit code
 * is the first non-zero one in that order; a deadline or a signal acts on
 * every request not yet collected.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { openSpool } from '../../src/spool/layout.js';
import { spawnWq, inNoState, spoolContents, startCliServer, waitFor } from '../fixtures/helpers.js';
import { closed, collect, openGate, waitGate, wq } from '../fixtures/gates.js';
import { spawnWqUntracked } from '../fixtures/cli.js';
import { listensForStopSignals } from '../fixtures/processes.js';

/** Ids of requests enqueued (without waiting) for each command. */
async function enqueueAll(spool: string, commands: string[][]): Promise<string[]> {
  const ids: string[] = [];
  for (const command of commands) ids.push((await wq(['enqueue', '--spool', spool, '--quiet', '--', ...command])).stdout.trim());
  return ids;
}


t.test('results print in the order given, each claimed as soon as it is written; the exit code is the first non-zero', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  await startCliServer(t, spool, ['--max-tasks', '3']);
  const gate = join(dir, 'gate');
  const [first, second, third] = await enqueueAll(spool, [
    ['sh', '-c', `${waitGate(gate)}; echo first`],
    ['sh', '-c', 'echo second; exit 3'],
    ['sh', '-c', 'echo third >&2; exit 5'],
  ]);
  const child = spawnWq(['wait', '--spool', spool, first!, second!, third!]);
  t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')));
  const stdout = collect(child.stdout);
  const stderr = collect(child.stderr);
  const ended = closed(child);
  await waitFor(() => inNoState(spool, second!) && inNoState(spool, third!), 'the two finished results to be claimed');
  t.ok(spoolContents(spool).running.includes(first!), 'while the first still runs');
  t.equal(stdout.text() + stderr.text(), '', 'nothing printed before the first in order');
  openGate(gate);
  t.same(await ended, { code: 3, signal: null }, "the second's exit code: the first non-zero in the order given");
  t.equal(stdout.text(), 'first\nsecond\n');
  t.equal(stderr.text(), 'third\n');

  const [zero, seven] = await enqueueAll(spool, [['true'], ['sh', '-c', 'exit 7']]);
  t.equal((await wq(['wait', '--spool', spool, seven!, zero!])).code, 7);
  const [a, b] = await enqueueAll(spool, [['true'], ['true']]);
  t.same(await wq(['wait', '--spool', spool, a!, b!]), { code: 0, signal: null, stdout: '', stderr: '' }, 'all succeeded: 0');
});

t.test('--json: one object per line, in the order given; an unknown id is one of them (exit 4)', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  await startCliServer(t, spool);
  const [one, two] = await enqueueAll(spool, [['echo', 'one'], ['echo', 'two']]);
  const unknown = '1700000000000000-000000000000';
  const r = await wq(['wait', '--spool', spool, '--json', two!, unknown, one!]);
  t.equal(r.code, 4, 'the unknown id is the first non-zero');
  const lines = r.stdout.split('\n');
  t.equal(lines.pop(), '', 'ends in a newline');
  t.match(
    lines.map((line) => JSON.parse(line)),
    [
      { id: two, exitCode: 0, status: 'normal', stdout: 'two\n' },
      { id: unknown, exitCode: 4, status: 'unknown' },
      { id: one, exitCode: 0, status: 'normal', stdout: 'one\n' },
    ],
  );
  t.same(spoolContents(spool).complete, [], 'both results claimed');
});

t.test('--timeout and signals act on every request not yet collected', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  openSpool(spool); // no server: nothing finishes
  const [a, b] = await enqueueAll(spool, [['true'], ['true']]);
  const timedOut = await wq(['wait', '--spool', spool, '--timeout', '0.2', a!, b!]);
  t.equal(timedOut.code, 124);
  const noServer = `wq: no server is running on spool ${spool}; the requests not yet complete wait until \`wq serve\` starts\n`;
  t.equal(timedOut.stderr, noServer + [a, b].map((id) => `wq: timed out after 0.2 s (--timeout) waiting for ${id}; the request was aborted\n`).join(''));
  t.same(spoolContents(spool).aborting, [a, b].sort(), 'both aborted');
  t.equal(readFileSync(join(spool, 'aborting', b!), 'utf8'), 'timeout\n');

  for (const detach of [false, true]) {
    const [c, d] = await enqueueAll(spool, [['true'], ['true']]);
    const child = spawnWqUntracked(['wait', '--spool', spool, ...(detach ? ['--detach-on-signal'] : []), c!, d!]);
    t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')));
    const stderr = collect(child.stderr);
    const ended = closed(child);
    await waitFor(() => listensForStopSignals(child.pid!), 'wq wait to listen for signals');
    child.kill('SIGTERM');
    t.same(await ended, { code: 143, signal: null });
    const filed = spoolContents(spool).aborting;
    if (detach) {
      t.equal(stderr.text(), noServer + [c, d].map((id) => `wq: stopped waiting (SIGTERM); request ${id} was left in the spool: collect it with \`wq wait ${id}\`\n`).join(''));
      t.notOk(filed.includes(c!) || filed.includes(d!), '--detach-on-signal: no abort filed');
    } else {
      t.equal(stderr.text(), `${noServer}wq: aborted request ${c} (SIGTERM)\nwq: aborted request ${d} (SIGTERM)\n`);
      t.ok(filed.includes(c!) && filed.includes(d!), 'both aborted');
    }
  }
});

t.test('usage: an id given twice, --follow with several ids', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  const id = '1700000000000000-000000000000';
  const twice = await wq(['wait', '--spool', spool, id, id]);
  t.equal(twice.code, 2);
  t.equal(twice.stderr, `wq: request ${id} is given twice\n`);
  const follow = await wq(['wait', '--spool', spool, '--follow', id, '1700000000000000-000000000001']);
  t.equal(follow.code, 2);
  t.match(follow.stderr, /--follow streams the output of one request/);
});
