/**
 * `--follow`: a command's output streams to the client while the command runs
 * (the test only lets the command go on once it has seen the first line), each
 * stream to its own fd, printed once; the logs go with the result; and more
 * than the result's 1 MiB cap streams whole.
 */
import { existsSync, readdirSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { fileShowsLaterRun, followLogs, parsePidRecord, pidShowsLaterRun, RECHECK_MS } from '../../src/spool/follow.js';
import { logPath, openSpool } from '../../src/spool/layout.js';
import { spoolContents, spawnWq, startCliServer, waitFor } from '../fixtures/helpers.js';
import { closed, collect, exited, openGate, rerunAfterRestart, sq, waitGate, wq } from '../fixtures/gates.js';
import { readLines } from '../fixtures/processes.js';

const MIB = 1024 * 1024;

async function served(t: Test): Promise<{ dir: string; spool: string }> {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  await startCliServer(t, spool);
  return { dir, spool };
}

/** A command that prints, waits for the gate, prints again; on both streams. */
function twoPhase(gate: string): string[] {
  return ['sh', '-c', `echo one; echo err-one >&2; ${waitGate(gate)}; echo two; echo err-two >&2`];
}

function logsOf(spool: string, id: string): string[] {
  return readdirSync(join(spool, 'logs')).filter((name) => name.startsWith(id));
}

/** Runs a `wq … --follow` child through the two phases and checks what it printed. */
async function followTwoPhases(t: Test, spool: string, gate: string, args: string[]): Promise<void> {
  const child = spawnWq(args);
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const stdout = collect(child.stdout);
  const stderr = collect(child.stderr);
  const ended = closed(child);

  await waitFor(() => stdout.text().includes('one\n'), 'the first line on the client’s stdout');
  t.notOk(existsSync(gate), 'the first line arrived while the command was still blocked');
  t.equal(stdout.text(), 'one\n', 'only the first line so far');
  await waitFor(() => stderr.text().includes('err-one\n'), 'the first stderr line on the client’s stderr');
  t.equal(stderr.text(), 'err-one\n', 'stderr lines come out on stderr');

  openGate(gate);
  const { code } = await ended;
  t.equal(code, 0);
  t.equal(stdout.text(), 'one\ntwo\n', 'all of stdout, printed once');
  t.equal(stderr.text(), 'err-one\nerr-two\n', 'all of stderr, printed once');
}

t.test('enqueue --wait --follow streams the output live', async (t) => {
  const { dir, spool } = await served(t);
  const gate = join(dir, 'go');
  t.teardown(() => openGate(gate));
  let id: string | undefined;
  const spotId = setInterval(() => (id ??= spoolContents(spool).running[0]), 5);
  t.teardown(() => clearInterval(spotId));
  await followTwoPhases(t, spool, gate, ['enqueue', '--spool', spool, '--wait', '--follow', '--', ...twoPhase(gate)]);
  t.ok(id, 'the request was seen running');
  t.strictSame(logsOf(spool, id!), [], 'nothing left in logs/ for the request');
  t.strictSame(spoolContents(spool).complete, [], 'the result was claimed');
  t.strictSame(spoolContents(spool).tmp, []);
});

t.test('wq wait --follow on a request enqueued earlier', async (t) => {
  const { dir, spool } = await served(t);
  const gate = join(dir, 'go');
  t.teardown(() => openGate(gate));
  const queued = await wq(['enqueue', '--spool', spool, '--', ...twoPhase(gate)]);
  t.equal(queued.code, 0);
  const id = queued.stdout.trim();
  await followTwoPhases(t, spool, gate, ['wait', '--spool', spool, '--follow', id]);
  t.strictSame(logsOf(spool, id), [], 'nothing left in logs/ for the request');
  t.strictSame(spoolContents(spool).complete, []);
});

t.test('wq wait --follow after the command finished prints its output once', async (t) => {
  const { spool } = await served(t);
  const queued = await wq(['enqueue', '--spool', spool, '--', 'sh', '-c', 'echo done; echo err >&2; exit 3']);
  const id = queued.stdout.trim();
  await waitFor(() => spoolContents(spool).complete.includes(id), 'the result');
  const r = await wq(['wait', '--spool', spool, '--follow', id]);
  t.strictSame(r, { code: 3, signal: null, stdout: 'done\n', stderr: 'err\n' });
  t.strictSame(logsOf(spool, id), []);
});

t.test('wq wait --follow on a request re-run after a server restart streams the re-run', async (t) => {
  // The first run is terminated at shutdown and its logs/<id>.* files stay; the
  // re-run must write its own output there, not leave the first run's in place.
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const { id, pids, gate } = await rerunAfterRestart(t, dir, spool);
  const child = spawnWq(['wait', '--spool', spool, '--follow', id]);
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const stdout = collect(child.stdout);
  const ended = closed(child);
  await waitFor(() => stdout.text().includes('run '), 'the first line');
  openGate(gate);
  const { code } = await ended;
  t.equal(code, 0);
  t.equal(stdout.text(), `run ${pids[1]}\nfinished\n`, "the re-run's output, not the first run's");
  t.strictSame(logsOf(spool, id), []);
});

t.test('wq wait --follow across a server restart: says the request runs again and streams the new run from its start', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const gate = join(dir, 'go');
  const runs = join(dir, 'runs');
  t.teardown(() => openGate(gate));
  const first = await startCliServer(t, spool, ['--grace', '0']);
  const queued = await wq(['enqueue', '--spool', spool, '--', 'sh', '-c', `echo run $$; echo $$ >> ${sq(runs)}; ${waitGate(gate)}; echo finished`]);
  const id = queued.stdout.trim();
  const child = spawnWq(['wait', '--spool', spool, '--follow', id]);
  t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')));
  const stdout = collect(child.stdout);
  const stderr = collect(child.stderr);
  const ended = closed(child);
  await waitFor(() => stdout.text().includes('run '), "the first run's line");

  first.kill('SIGTERM'); // --grace 0: the task is terminated and left in running/
  t.equal((await exited(first)).code, 0);
  await startCliServer(t, spool);
  await waitFor(() => readLines(runs).length === 2, 'the next server to run the request again');
  openGate(gate);
  const [p1, p2] = readLines(runs);
  t.same(await ended, { code: 0, signal: null });
  t.equal(stdout.text(), `run ${p1}\nrun ${p2}\nfinished\n`, "the first run's output, then all of the second's");
  t.equal(stderr.text(), `wq: request ${id} is running again (attempt 2)\n`);
  t.strictSame(logsOf(spool, id), []);
});

t.test('a later run is told by its pid record or by a replaced or shorter log file', async (t) => {
  t.equal(parsePidRecord(Buffer.from('41\n')), '41');
  for (const torn of ['', '4', '41', 'x\n']) t.equal(parsePidRecord(Buffer.from(torn)), undefined, `${JSON.stringify(torn)} is not a whole record (created, not yet written)`);
  t.equal(parsePidRecord(undefined), undefined);
  t.notOk(pidShowsLaterRun(undefined, '41\n'), 'the first record seen');
  t.notOk(pidShowsLaterRun('41\n', undefined), 'a record removed (before a re-run) says nothing yet');
  t.notOk(pidShowsLaterRun('41\n', '41\n'));
  t.ok(pidShowsLaterRun('41\n', '42\n'), 'another pid: even if the new log files reuse the old inodes');
  t.notOk(fileShowsLaterRun(undefined, 0, { ino: 7, size: 0 }), 'the first file seen');
  t.notOk(fileShowsLaterRun(7, 10, { ino: 7, size: 10 }));
  t.notOk(fileShowsLaterRun(7, 10, { ino: 7, size: 12 }), 'grown: more of the same run');
  t.ok(fileShowsLaterRun(7, 10, { ino: 8, size: 12 }), 'another inode');
  t.ok(fileShowsLaterRun(7, 10, { ino: 7, size: 3 }), 'shorter than what was read');
});

t.test('a pid record caught between its creation and its write is not a later run', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  const paths = openSpool(spool, { create: true });
  const id = '1795800000000000-486ad342733e';
  writeFileSync(logPath(paths, id, 'pid'), ''); // created, not yet written (the server writes it in two steps)
  writeFileSync(logPath(paths, id, 'stdout'), 'once\n');
  let got = '';
  const reruns: number[] = [];
  const follower = followLogs(spool, id, { stdout: (chunk) => (got += chunk.toString()), stderr: () => {} }, (attempt) => reruns.push(attempt));
  await waitFor(() => got !== '', 'the output');
  writeFileSync(logPath(paths, id, 'pid'), '4242\n');
  writeFileSync(logPath(paths, id, 'stdout'), 'once\nmore\n', { flag: 'r+' }); // same file, grown
  await waitFor(() => got.includes('more'), 'the rest');
  await follower.finish();
  t.equal(got, 'once\nmore\n', 'each line once');
  t.strictSame(reruns, [], 'no re-run reported');
});

t.test('more than 1 MiB of output', async (t) => {
  const { spool } = await served(t);
  const total = MIB + MIB / 2;
  const big = ['sh', '-c', `head -c ${total} /dev/zero | tr '\\0' x`];

  t.test('--follow streams all of it', async (t) => {
    const child = spawnWq(['enqueue', '--spool', spool, '--wait', '--follow', '--', ...big]);
    const stdout = collect(child.stdout);
    const stderr = collect(child.stderr);
    const { code } = await closed(child);
    t.equal(code, 0);
    t.equal(stdout.bytes(), total, 'every byte');
    t.match(stdout.text(), /^x+$/);
    t.equal(stderr.text(), '', 'no note about dropped bytes: nothing was dropped');
  });

  t.test('without --follow: all of it too, read from the log (the result holds 1 MiB)', async (t) => {
    const r = await wq(['enqueue', '--spool', spool, '--wait', '--', ...big]);
    t.equal(r.code, 0);
    t.equal(r.stdout.length, total, 'every byte');
    t.match(r.stdout, /^x+$/);
    t.equal(r.stderr, '', 'no note: nothing was lost');
  });
});

t.test('the follower sees a log file created right after it starts', async (t) => {
  // chokidar may miss a file that appears while it is still arming its watch;
  // the follower's slow re-read must deliver it anyway. Unwatched, about one
  // in four of these starts misses (measured), so twenty would not all pass.
  const spool = join(realpathSync(t.testdir()), 'spool');
  const paths = openSpool(spool, { create: true });
  const ATTEMPTS = 20;
  let delivered = 0;
  for (let i = 0; i < ATTEMPTS; i++) {
    const id = `17958${String(i).padStart(11, '0')}-486ad342733e`;
    let got = '';
    const follower = followLogs(spool, id, { stdout: (chunk) => (got += chunk.toString()), stderr: () => {} });
    await new Promise((r) => setTimeout(r, i % 4)); // 0–3 ms: where the watch was seen to miss
    writeFileSync(logPath(paths, id, 'stdout'), `line ${i}\n`);
    try {
      await waitFor(() => got !== '', `line ${i} to be followed`, RECHECK_MS * 3);
      if (got === `line ${i}\n`) delivered++;
    } finally {
      await follower.finish();
    }
  }
  t.equal(delivered, ATTEMPTS, 'every file was followed, each line once');
});
