/**
 * `wq serve`, black-box: capacity and FIFO order as the tasks themselves
 * record them, one server per spool, --handler, --exec, and a clean stop on
 * SIGTERM.
 */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { spawnWq, spoolContents, startCliServer, waitFor } from '../fixtures/helpers.js';
import { BLOCKER, captureStderr, exited, release, wq } from '../fixtures/cli.js';
import { collect } from '../fixtures/gates.js';
import { concurrencyOf, readLines } from '../fixtures/processes.js';

const ID = /^\d{16}-[0-9a-f]{12}$/;

t.test('--max-tasks 2: never more than two at once, started in enqueue order', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  await startCliServer(t, spool, ['--max-tasks', '2']);
  const ids: string[] = [];
  for (let n = 0; n < 10; n++) {
    const r = await wq(['enqueue', '--spool', spool, '--', 'sh', '-c', `echo "start ${n}" >> log; sleep 1; echo "end ${n}" >> log; echo ${n}`], { cwd: dir });
    t.equal(r.code, 0);
    ids.push(r.stdout.trim());
  }
  t.ok(ids.every((id) => ID.test(id)), 'ten ids');
  const results = await Promise.all(ids.map((id) => wq(['wait', '--spool', spool, id])));
  t.same(
    results.map((r) => [r.code, r.stdout]),
    ids.map((_, n) => [0, `${n}\n`]),
    'every wait gets its own output',
  );
  const { maxRunning, starts, ends } = concurrencyOf(readLines(join(dir, 'log')));
  t.equal(maxRunning, 2, 'two at once, never three');
  t.same(starts, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'], 'started in enqueue order');
  t.equal(ends.length, 10);
});

t.test('a second wq serve on the same spool exits 3 and names the running one', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const first = await startCliServer(t, spool);
  const second = await wq(['serve', '--spool', spool]);
  t.equal(second.code, 3);
  t.match(second.stderr, `pid ${first.pid}`, 'the message names the pid of the server holding the spool');
  t.equal(JSON.parse(readFileSync(join(spool, 'server.lock'), 'utf8')).pid, first.pid, 'the lock still names the first server');
  t.equal(first.exitCode, null, 'the first server is still running');
  const r = await wq(['enqueue', '--spool', spool, '--wait', '--', 'echo', 'served']);
  t.same([r.code, r.stdout], [0, 'served\n'], 'and still serving');
});

t.test('--handler: a request made with --data gets the handler result as JSON', async (t) => {
  const dir = realpathSync(
    t.testdir({
      'handler.mjs': `export default async function (request, { id }) {
        if (request.fail) throw new Error('asked to fail');
        return { got: request, id, sum: request.a + 1 };
      }\n`,
    }),
  );
  const spool = join(dir, 'spool');
  await startCliServer(t, spool, ['--handler', join(dir, 'handler.mjs')]);
  const r = await wq(['enqueue', '--spool', spool, '--wait', '--data', '{"a":1}']);
  t.equal(r.code, 0);
  t.equal(r.stderr, '');
  t.equal(r.stdout.split('\n').length, 2, 'one line of JSON');
  const value = JSON.parse(r.stdout);
  t.same(value.got, { a: 1 });
  t.equal(value.sum, 2);
  t.match(value.id, ID);

  const failed = await wq(['enqueue', '--spool', spool, '--wait', '--data', '{"fail":true}']);
  t.equal(failed.code, 1, 'a handler that throws: exit 1');
  t.match(failed.stderr, /asked to fail/);
  t.equal(failed.stdout, '');
});

t.test('--data to a server that runs commands: the request fails and says the server wants a command (plain) or arguments (--exec); nothing runs', async (t) => {
  const dir = realpathSync(t.testdir());
  for (const [mode, args, message] of [
    ['plain', [], /this server runs commands, and the request holds data \(wq enqueue --data\), not a command: give one after --/],
    ['--exec', ['--exec', `sh -c ${JSON.stringify(`echo ran >> ${join(dir, 'ran')}; echo "[$@]"`)} x`], /this server runs "sh -c .*" with each request's arguments appended, and the request holds data \(wq enqueue --data\), which are not arguments: give them after --/],
  ] as const) {
    const spool = join(dir, `spool-${mode}`);
    const server = await startCliServer(t, spool, [...args]);
    const r = await wq(['enqueue', '--spool', spool, '--wait', '--data', '{"a":1}'], { cwd: dir });
    t.equal(r.code, 1, `${mode}: exit 1`);
    t.match(r.stderr, message, `${mode}: names the mismatch`);
    t.equal(r.stdout, '', `${mode}: nothing ran`);
    server.kill('SIGTERM');
    await exited(server);
  }
  t.notOk(existsSync(join(dir, 'ran')), 'the --exec command never ran');
});

t.test("--handler: a handler's console.log and console.error go to the server's log (--log-file), one line each, tagged with the request id", async (t) => {
  const dir = realpathSync(
    t.testdir({
      'handler.mjs': `export default async function (request, { id }) {
        console.log('hello from', id);
        console.error('trouble in', id);
        process.stdout.write('no newline');
        return 'ok';
      }\n`,
    }),
  );
  const spool = join(dir, 'spool');
  const log = join(dir, 'server.log');
  const server = spawnWq(['serve', '--spool', spool, '--handler', join(dir, 'handler.mjs'), '--log-file', log]);
  const out = collect(server.stdout);
  const err = collect(server.stderr);
  t.teardown(() => void server.kill('SIGKILL'));
  const logText = (): string => (existsSync(log) ? readFileSync(log, 'utf8') : '');
  await waitFor(() => logText().includes('server started'), 'the server to start');
  const r = await wq(['enqueue', '--spool', spool, '--wait', '--json', '--data', '{}']);
  t.equal(r.code, 0, r.stderr);
  const { id } = JSON.parse(r.stdout) as { id: string };
  server.kill('SIGTERM');
  await exited(server);
  const text = logText();
  t.match(text, new RegExp(`\\S+ info handler stdout id=${id} pid=\\d+ line="hello from ${id}"\\n`), 'console.log: an info line with the request id');
  t.match(text, new RegExp(`\\S+ warn handler stderr id=${id} pid=\\d+ line="trouble in ${id}"\\n`), 'console.error: a warn line with the request id');
  t.match(text, new RegExp(`info handler stdout id=${id} pid=\\d+ line="no newline"\\n`), 'a last line without a newline is logged too, at the stop');
  t.equal(out.text(), '', "nothing on the server's stdout");
  t.notMatch(err.text(), /hello from|trouble in/, "nor on its stderr");
});

t.test('--handler with a module that cannot load: wq serve exits 2 naming it', async (t) => {
  const dir = realpathSync(t.testdir({ 'nothing.mjs': 'export const x = 1;\n' }));
  const r = await wq(['serve', '--spool', join(dir, 'spool'), '--handler', join(dir, 'nothing.mjs')]);
  t.equal(r.code, 2);
  t.match(r.stderr, 'nothing.mjs');
  t.match(r.stderr, /default export/);
});

t.test('--exec: the request arguments are appended to the command', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  await startCliServer(t, spool, ['--exec', 'echo prefix']);
  const r = await wq(['enqueue', '--spool', spool, '--wait', '--', 'a', 'b c']);
  t.same([r.code, r.stdout, r.stderr], [0, 'prefix a b c\n', '']);
});

t.test('SIGTERM: the running task finishes within --grace, nothing new starts, the server exits 0', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const server = await startCliServer(t, spool, ['--grace', '30']);
  const log = captureStderr(server);
  const running = wq(['enqueue', '--spool', spool, '--wait', '--', 'sh', '-c', BLOCKER], { cwd: dir });
  await waitFor(() => existsSync(join(dir, 'blocker.pids')), 'the first task to start');
  const queued = await wq(['enqueue', '--spool', spool, '--', 'sh', '-c', 'touch second-ran'], { cwd: dir });
  const secondId = queued.stdout.trim();
  await waitFor(() => spoolContents(spool).pending.includes(secondId), 'the second request to be queued');

  server.kill('SIGTERM');
  await waitFor(() => log.text().includes('no new tasks will start'), 'the server to start draining');
  t.equal(server.exitCode, null, 'the server waits for the running task');
  release(dir);
  t.same(await exited(server), { code: 0, signal: null }, 'then exits 0');
  const r = await running;
  t.same([r.code, r.stdout], [0, 'first\n'], 'the running task finished and its result was delivered');
  t.notOk(existsSync(join(dir, 'second-ran')), 'the queued request did not start while stopping');
  t.same(spoolContents(spool).pending, [secondId], 'it stays queued for the next server');

  await startCliServer(t, spool);
  const next = await wq(['wait', '--spool', spool, secondId]);
  t.equal(next.code, 0, 'the next server runs it');
  t.ok(existsSync(join(dir, 'second-ran')));
});
