/**
 * How `wq enqueue --wait` and `wq wait` report: `--json` (one object per
 * outcome: command output, handler result, error, timeouts), `--quiet`, the
 * messages that name which deadline expired, and `--follow` vs `--json`.
 */
import { existsSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { spoolContents, startCliServer, waitFor } from '../fixtures/helpers.js';
import { wq } from '../fixtures/gates.js';
import { isGone, readPid } from '../fixtures/processes.js';

const ID = /^\d{16}-[0-9a-f]{12}$/;
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/** The one JSON object a --json run printed (and nothing else on stdout). */
function onlyJson(t: Test, stdout: string): Record<string, any> {
  const lines = stdout.split('\n');
  t.equal(lines.length, 2, 'one line on stdout');
  t.equal(lines[1], '', 'ending in a newline');
  return JSON.parse(lines[0]!) as Record<string, any>;
}

async function served(t: Test, args: string[] = []): Promise<{ dir: string; spool: string }> {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  await startCliServer(t, spool, args);
  return { dir, spool };
}

t.test('--json with a command: exit code, stdout, stderr, timings', async (t) => {
  const { spool } = await served(t);
  const r = await wq(['enqueue', '--spool', spool, '--wait', '--json', '--', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
  t.equal(r.code, 3, "wq exits with the command's code");
  t.equal(r.stderr, '', 'nothing on stderr: the output is in the JSON');
  const json = onlyJson(t, r.stdout);
  t.match(json, { id: ID, exitCode: 3, ok: true, status: 'normal', signal: null, stdout: 'out\n', stderr: 'err\n' });
  for (const key of ['queuedAt', 'startedAt', 'finishedAt']) t.match(json[key], ISO, `${key} is an ISO time`);
  t.notOk('result' in json || 'error' in json, 'no result or error for a command that ran');
  t.strictSame(spoolContents(spool).complete, [], 'the result was claimed');
});

t.test('--json on enqueue without --wait prints the id; wq wait --json collects it', async (t) => {
  const { spool } = await served(t);
  const queued = await wq(['enqueue', '--spool', spool, '--json', '--', 'printf', 'a\\x00b']);
  t.equal(queued.code, 0);
  const { id } = onlyJson(t, queued.stdout);
  t.match(id, ID);
  const r = await wq(['wait', '--spool', spool, '--json', id]);
  t.equal(r.code, 0);
  const json = onlyJson(t, r.stdout);
  t.match(json, { id, exitCode: 0, ok: true, status: 'normal', stdout: 'a\u0000b', stderr: '' });
});

t.test('--json with output that is not UTF-8: base64', async (t) => {
  const { spool } = await served(t);
  const r = await wq(['enqueue', '--spool', spool, '--wait', '--json', '--', 'printf', '\\377\\376']);
  t.equal(r.code, 0);
  t.strictSame(onlyJson(t, r.stdout).stdout, { base64: Buffer.from([0xff, 0xfe]).toString('base64') });
});

t.test('--json with a handler server: the result, or the error', async (t) => {
  const dir = realpathSync(t.testdir());
  const handler = join(dir, 'handler.mjs');
  writeFileSync(
    handler,
    `export default async function (request, { id }) {
  if (request.fail) {
    const err = new RangeError('no can do');
    err.code = 'E_NOPE';
    throw err;
  }
  return { doubled: request.n * 2, id };
}
`,
  );
  const spool = join(dir, 'spool');
  await startCliServer(t, spool, ['--handler', handler]);

  const ok = await wq(['enqueue', '--spool', spool, '--wait', '--json', '--data', '{"n":21}']);
  t.equal(ok.code, 0);
  t.equal(ok.stderr, '');
  const json = onlyJson(t, ok.stdout);
  t.match(json, { id: ID, exitCode: 0, ok: true, status: 'normal' });
  t.strictSame(json.result, { doubled: 42, id: json.id }, 'the value the handler returned');
  t.notOk('stdout' in json || 'stderr' in json || 'error' in json, 'no command fields');

  const failed = await wq(['enqueue', '--spool', spool, '--wait', '--json', '--data', '{"fail":true}']);
  t.equal(failed.code, 1, 'a failed task exits 1');
  const error = onlyJson(t, failed.stdout);
  t.match(error, { id: ID, exitCode: 1, ok: false, status: 'error' });
  t.strictSame(error.error, { name: 'RangeError', message: 'no can do', code: 'E_NOPE' }, 'name, message and code, no stack');
  t.notOk('result' in error);

  const plain = await wq(['enqueue', '--spool', spool, '--wait', '--data', '{"n":1}']);
  t.equal(plain.code, 0);
  t.match(plain.stdout, /^\{"doubled":2,"id":"\d{16}-[0-9a-f]{12}"\}\n$/, 'without --json: the result as one JSON line');
  const plainFailed = await wq(['enqueue', '--spool', spool, '--wait', '--data', '{"fail":true}']);
  t.equal(plainFailed.code, 1);
  t.equal(plainFailed.stdout, '');
  t.match(plainFailed.stderr, /^wq: request \S+ failed: RangeError: no can do\n$/);
});

t.test('--timeout: exit 124, deadline total, the request is aborted', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool'); // no server: nothing ever starts
  const r = await wq(['enqueue', '--spool', spool, '--wait', '--json', '--timeout', '0.3', '--', 'true']);
  t.equal(r.code, 124);
  const json = onlyJson(t, r.stdout);
  t.match(json, { id: ID, exitCode: 124, ok: false, status: 'timed_out', deadline: 'total' });
  t.match(json.error, { name: 'WorkQueueTimeoutError', code: 'ERR_TIMEOUT', message: /total timeout of 0\.3 s/ });
  t.equal(readFileSync(join(spool, 'aborting', json.id), 'utf8'), 'timeout\n', 'an abort marked "timeout" was filed');

  const text = await wq(['wait', '--spool', spool, '--timeout', '0.2', json.id]);
  t.equal(text.code, 124);
  t.equal(text.stdout, '');
  t.equal(
    text.stderr,
    `wq: no server is running on spool ${spool}; the request stays queued until \`wq serve\` starts\n` +
      `wq: timed out after 0.2 s (--timeout) waiting for ${json.id}; the request was aborted\n`,
    'the message names --timeout (after saying that no server runs)',
  );

  const waited = await wq(['wait', '--spool', spool, '--json', '--timeout', '0.2', json.id]);
  t.equal(waited.code, 124);
  t.match(onlyJson(t, waited.stdout), { id: json.id, status: 'timed_out', deadline: 'total' });
});

t.test('--run-timeout: exit 124, deadline run, the command is killed', async (t) => {
  const { dir, spool } = await served(t);
  const pidFile = join(dir, 'sleep.pid');
  const r = await wq(['enqueue', '--spool', spool, '--wait', '--json', '--run-timeout', '0.5', '--', 'sh', '-c', `echo $$ > ${pidFile}; exec sleep 5`]);
  t.equal(r.code, 124);
  const json = onlyJson(t, r.stdout);
  t.match(json, { id: ID, exitCode: 124, ok: false, status: 'timed_out', deadline: 'run' });
  t.match(json.error, { name: 'RunTimeoutError', code: 'ERR_RUN_TIMEOUT', message: /run timeout of 0\.5 s/ });
  const pid = readPid(pidFile);
  t.type(pid, 'number', 'the command ran and wrote its pid');
  await waitFor(() => isGone(pid!), 'the sleep to be killed');
  t.ok(isGone(pid!), 'the sleep is gone');

  const pidFile2 = join(dir, 'sleep2.pid');
  const text = await wq(['enqueue', '--spool', spool, '--wait', '--run-timeout', '0.5', '--', 'sh', '-c', `echo $$ > ${pidFile2}; exec sleep 5`]);
  t.equal(text.code, 124);
  t.equal(text.stdout, '');
  t.match(text.stderr, /^wq: request \S+ ran longer than its run timeout \(--run-timeout 0\.5 s\); it was terminated\n$/, 'the message names --run-timeout');
  await waitFor(() => isGone(readPid(pidFile2)!), 'the second sleep to be killed');
});

t.test('--quiet: nothing but the task’s own output', async (t) => {
  t.test('no server: the warning, unless --quiet', async (t) => {
    const spool = join(realpathSync(t.testdir()), 'spool');
    const loud = await wq(['enqueue', '--spool', spool, '--', 'true']);
    t.equal(loud.code, 0);
    t.match(loud.stdout, /^\d{16}-[0-9a-f]{12}\n$/);
    t.equal(loud.stderr, `wq: no server is running on spool ${spool}; the request stays queued until \`wq serve\` starts\n`);

    const quiet = await wq(['enqueue', '--spool', spool, '--quiet', '--', 'true']);
    t.equal(quiet.code, 0);
    t.match(quiet.stdout, /^\d{16}-[0-9a-f]{12}\n$/, 'the id is still printed');
    t.equal(quiet.stderr, '', 'no warning');
    t.equal(spoolContents(spool).requested.length, 2, 'both were queued');

    const timeout = await wq(['enqueue', '--spool', spool, '--wait', '-q', '--timeout', '0.2', '--', 'true']);
    t.equal(timeout.code, 124, 'still exits 124');
    t.equal(timeout.stdout, '');
    t.equal(timeout.stderr, '', 'but says nothing');
  });

  t.test('served: the command’s output and exit code only', async (t) => {
    const { spool } = await served(t);
    const r = await wq(['enqueue', '--spool', spool, '--wait', '--quiet', '--', 'sh', '-c', 'echo out; echo err >&2; exit 5']);
    t.strictSame(r, { code: 5, signal: null, stdout: 'out\n', stderr: 'err\n' });
    const killed = await wq(['enqueue', '--spool', spool, '--wait', '--quiet', '--run-timeout', '0.2', '--', 'sleep', '5']);
    t.strictSame(killed, { code: 124, signal: null, stdout: '', stderr: '' }, 'a run timeout, quietly');
  });
});

t.test('wq wait --json for an unknown id: exit 4', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  const id = '1700000000000000-0123456789ab';
  const r = await wq(['wait', '--spool', spool, '--json', id]);
  t.equal(r.code, 4);
  t.match(onlyJson(t, r.stdout), { id, exitCode: 4, ok: false, status: 'unknown', error: { code: 'ERR_UNKNOWN_REQUEST' } });
});

t.test('--follow with --json is a usage error', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  const r = await wq(['enqueue', '--spool', spool, '--wait', '--follow', '--json', '--', 'true']);
  t.equal(r.code, 2);
  t.equal(r.stdout, '');
  t.match(r.stderr, /^wq: --follow streams the output as it comes; --json prints it once at the end: pick one\n$/);
  t.notOk(existsSync(join(spool, 'requested')) && spoolContents(spool).requested.length > 0, 'nothing was queued');

  const w = await wq(['wait', '--spool', spool, '-f', '--json', '1700000000000000-0123456789ab']);
  t.equal(w.code, 2);
  t.match(w.stderr, 'pick one');
});
