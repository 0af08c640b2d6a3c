/**
 * `wq serve` as a daemon: SIGTERM lets running tasks finish and loses nothing
 * across a restart; a second signal exits at once and the next server re-runs
 * what was cut short; `--log-file` and `--log-level`.
 */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { spawnWq, spoolContents, startCliServer, waitFor } from '../fixtures/helpers.js';
import { collect, exited, openGate, sq, waitGate, wq } from '../fixtures/gates.js';
import { killQuietly, readLines } from '../fixtures/processes.js';

async function enqueue(spool: string, argv: string[]): Promise<string> {
  const r = await wq(['enqueue', '--spool', spool, '--quiet', '--', ...argv]);
  if (r.code !== 0) throw new Error(`wq enqueue failed (${r.code}): ${r.stderr}`);
  return r.stdout.trim();
}

t.test('SIGTERM lets running tasks finish; after a restart every request runs exactly once', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const ledger = join(dir, 'ledger');
  // Queued before the server starts, so a slow machine cannot have run them all
  // before the test gets to send its signal.
  const ids = await Promise.all(
    Array.from({ length: 20 }, (_, i) => enqueue(spool, ['sh', '-c', `echo ${i} >> ${sq(ledger)}; sleep 0.3`])),
  );
  t.equal(new Set(ids).size, 20, '20 distinct ids');
  t.equal(spoolContents(spool).requested.length, 20);
  const server = await startCliServer(t, spool, ['--max-tasks', '2', '--grace', '30']);
  const log = collect(server.stderr);

  await waitFor(() => readLines(ledger).length >= 4 && spoolContents(spool).running.length > 0, 'some tasks to have run and some to be running');
  const runningAtSignal = spoolContents(spool).running.filter((name) => !name.endsWith('.proc')); // .proc: each task's process record
  server.kill('SIGTERM');
  const { code, signal } = await exited(server);
  t.equal(code, 0, 'the server exits 0');
  t.equal(signal, null);
  t.match(log.text(), 'signal received: finishing running tasks');
  t.match(log.text(), 'server stopped');
  t.notMatch(log.text(), 'terminated at shutdown', 'no task was cut short');

  const after = spoolContents(spool);
  t.strictSame(after.running, [], 'nothing was left running');
  for (const id of runningAtSignal) t.ok(after.complete.includes(id), `${id}, running at the signal, finished and has its result`);
  t.equal(readLines(ledger).length, after.complete.length, 'every task that started has finished');
  t.equal(after.requested.length + after.pending.length + after.complete.length, 20, 'no request was lost');
  t.ok(after.pending.length + after.requested.length > 0, 'some were still waiting when the server stopped');
  t.notOk(existsSync(join(spool, 'server.lock')), 'the lock was released');

  await startCliServer(t, spool, ['--max-tasks', '2']);
  const results = await Promise.all(ids.map((id) => wq(['wait', '--spool', spool, id])));
  results.forEach((r, i) => t.equal(r.code, 0, `request ${i} succeeded`));
  const ran = readLines(ledger).map(Number);
  t.strictSame([...ran].sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i), 'every index exactly once: none ran twice, none was lost');
});

for (const [signal, exitCode] of [['SIGTERM', 143], ['SIGINT', 130]] as const) {
  t.test(`a second ${signal} exits at once; the next server re-runs the task`, async (t) => {
    const dir = realpathSync(t.testdir());
    const spool = join(dir, 'spool');
    const gate = join(dir, 'go');
    const runs = join(dir, 'runs');
    t.teardown(() => {
      openGate(gate);
      for (const pid of readLines(runs)) killQuietly(-Number(pid));
    });
    const server = await startCliServer(t, spool, ['--grace', '60']);
    const log = collect(server.stderr);
    const id = await enqueue(spool, ['sh', '-c', `echo $$ >> ${sq(runs)}; ${waitGate(gate)}; echo finished`]);
    await waitFor(() => readLines(runs).length === 1, 'the task to start');

    server.kill(signal);
    await waitFor(() => log.text().includes('signal received'), 'the server to begin its graceful stop');
    t.equal(server.exitCode, null, 'the first signal waits for the task (grace 60 s)');
    server.kill(signal);
    const ended = await exited(server);
    t.strictSame(ended, { code: exitCode, signal: null }, `exit ${exitCode} at the second signal`);
    t.match(log.text(), 'second signal: exiting at once');
    t.strictSame(spoolContents(spool).running, [id, `${id}.proc`], 'the request stays in running/ for the next server, with its task\'s process record');
    t.strictSame(spoolContents(spool).complete, [], 'it has no result');

    await startCliServer(t, spool);
    await waitFor(() => readLines(runs).length === 2, 'the next server to run the task again');
    const [first, second] = readLines(runs);
    t.not(first, second, 'a new process');
    killQuietly(-Number(first)); // the first run, left behind by the killed server
    openGate(gate);
    const r = await wq(['wait', '--spool', spool, id]);
    t.strictSame(r, { code: 0, signal: null, stdout: 'finished\n', stderr: '' });
    t.equal(readLines(runs).length, 2, 'run twice in all, not more');
  });
}

/** `wq serve` writing to a log file: started by hand, as startCliServer waits for a line on stderr. */
async function serveWithLogFile(t: Test, spool: string, logFile: string, args: string[] = []) {
  const child = spawnWq(['serve', '--spool', spool, '--log-file', logFile, ...args]);
  const stderr = collect(child.stderr);
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const logText = (): string => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
  await waitFor(() => logText().includes('server started') || child.exitCode !== null, 'wq serve to log that it started');
  if (child.exitCode !== null) throw new Error(`wq serve exited early (${child.exitCode}): ${stderr.text()}`);
  return { child, stderr, logText };
}

const LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warn|error) \S/;

t.test('--log-file gets the log lines; stderr stays empty', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const logFile = join(dir, 'wq.log');
  const { child, stderr, logText } = await serveWithLogFile(t, spool, logFile);

  const r = await wq(['enqueue', '--spool', spool, '--wait', '--', 'echo', 'hi']);
  t.equal(r.code, 0);
  t.equal(r.stdout, 'hi\n');
  await waitFor(() => / info tick .*completed=1/.test(logText()), 'a tick line for the completion');
  child.kill('SIGTERM');
  t.equal((await exited(child)).code, 0);

  const lines = logText().split('\n').filter((l) => l !== '');
  t.ok(lines.every((l) => LINE.test(l)), 'every line is "time level message fields"');
  const index = (re: RegExp): number => lines.findIndex((l) => re.test(l));
  t.match(lines[index(/ server started/)], new RegExp(` info server started spool=${spool} pid=${child.pid} maxTasks=1$`));
  t.ok(index(/ info heartbeat /) !== -1, 'a heartbeat line');
  t.ok(index(/ info heartbeat /) < index(/ info tick /), 'the heartbeat comes at start, before the first busy tick');
  t.ok(index(/ info tick new=1 /) !== -1, 'a tick line counts the new request');
  t.ok(index(/ info server stopped/) > index(/ info signal received/), 'the stop is logged too');
  t.notOk(lines.some((l) => / debug /.test(l)), 'no debug lines at the default level');
  t.equal(stderr.text(), '', 'nothing on stderr');
});

t.test('a run timeout is counted in its tick line', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const logFile = join(dir, 'wq.log');
  const { logText } = await serveWithLogFile(t, spool, logFile);
  const r = await wq(['enqueue', '--spool', spool, '--wait', '--run-timeout', '0.2', '--', 'sleep', '5']);
  t.equal(r.code, 124);
  await waitFor(() => logText().includes('run timeout: terminated'), 'the run timeout to be logged');
  // The tick that terminated the task logs a summary; the kill is an abort.
  const lines = logText().split('\n');
  const killedAt = lines.findIndex((l) => l.includes('run timeout: terminated'));
  t.match(lines[killedAt + 1], / info tick new=0 started=0 aborted=1 completed=0 /, 'the tick after the kill counts it as aborted');
});

t.test('--log-level debug logs one line per transition', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const logFile = join(dir, 'wq.log');
  const { stderr, logText } = await serveWithLogFile(t, spool, logFile, ['--log-level', 'debug']);
  const r = await wq(['enqueue', '--spool', spool, '--json', '--wait', '--', 'true']);
  t.equal(r.code, 0);
  const { id } = JSON.parse(r.stdout) as { id: string };
  await waitFor(() => logText().includes(`completed id=${id}`), 'the completion to be logged');
  const lines = logText().split('\n');
  const about = (what: string) => lines.filter((l) => l.includes(` debug ${what} id=${id}`));
  t.equal(about('admitted').length, 1, 'admitted once');
  t.equal(about('started').length, 1, 'started once');
  t.equal(about('completed').length, 1, 'completed once');
  t.match(about('completed')[0], / ok=true$/);
  const at = (what: string) => lines.indexOf(about(what)[0]!);
  t.ok(at('admitted') < at('started') && at('started') < at('completed'), 'in order');
  t.equal(stderr.text(), '');

});

t.test('--log-level warn: a quiet run logs nothing', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const logFile = join(dir, 'wq.log');
  const child = spawnWq(['serve', '--spool', spool, '--log-file', logFile, '--log-level', 'warn']);
  const stderr = collect(child.stderr);
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  await waitFor(() => existsSync(join(spool, 'server.lock')) || child.exitCode !== null, 'the server to take the lock');
  const r = await wq(['enqueue', '--spool', spool, '--wait', '--', 'true']);
  t.equal(r.code, 0);
  child.kill('SIGTERM');
  t.equal((await exited(child)).code, 0);
  // On ext4 without a journal (or a network file system) the server rightly warns about it at
  // start (test/spool/mount.ts); nothing else may be there.
  const lines = readFileSync(logFile, 'utf8').split('\n').filter((l) => l !== '');
  t.strictSame(lines.filter((l) => !/ warn the spool is on /.test(l)), [], 'no info or debug lines');
  t.equal(stderr.text(), '');
});
