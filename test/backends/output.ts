/**
 * How `wq enqueue --wait` and `wq wait` report, on every backend
 * (test/fixtures/backends.ts): exit codes (the command's, 128+N for a signal,
 * 124 for a deadline), the id line, `--json` (command output, handler result
 * or error, timeouts), `--quiet`, the messages that name which deadline
 * expired, large output byte for byte, and `wq serve --max-output`.
 * Observed through `wq` and files the tasks write only.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { captureStderr, exited, wq } from '../fixtures/cli.js';
import { forEachBackend, requests } from '../fixtures/backends.js';
import { sq } from '../fixtures/gates.js';
import { spawnWq, waitFor } from '../fixtures/helpers.js';
import { isGone, readPid } from '../fixtures/processes.js';

const ID = /^\d{16}-[0-9a-f]{12}$/;
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
/** `seq 1 2000000`: 14.9 MB, far past the 1 MiB per stream a result carries inline. */
const BIG = ['seq', '1', '2000000'];

/** The one JSON object a --json run printed (and nothing else on stdout). */
function onlyJson(t: Test, stdout: string): Record<string, any> {
  const lines = stdout.split('\n');
  t.equal(lines.length, 2, 'one line on stdout');
  t.equal(lines[1], '', 'ending in a newline');
  return JSON.parse(lines[0]!) as Record<string, any>;
}


/** Runs `wq args > file` and returns its exit code, stderr and the bytes it wrote. */
async function runToFile(args: string[], file: string): Promise<{ code: number | null; stderr: string; bytes: Buffer }> {
  const fd = openSync(file, 'w');
  const child = spawnWq(args, { stdio: ['ignore', fd, 'pipe'] });
  closeSync(fd);
  const stderr = captureStderr(child);
  const { code } = await exited(child);
  return { code, stderr: stderr.text(), bytes: readFileSync(file) };
}

forEachBackend("enqueue --wait: the command's output, its streams apart, its exit code; nothing left behind", async (t, q) => {
  await q.serve();
  t.same(await wq(['enqueue', ...q.flags, '--wait', '--', 'echo', 'hi']), { code: 0, signal: null, stdout: 'hi\n', stderr: '' });
  const seven = await wq(['enqueue', ...q.flags, '--wait', '--', 'sh', '-c', 'exit 7']);
  t.same([seven.code, seven.stdout], [7, '']);
  const streams = await wq(['enqueue', ...q.flags, '--wait', '--', 'sh', '-c', 'echo to-stderr >&2; echo to-stdout; exit 1']);
  t.same(streams, { code: 1, signal: null, stdout: 'to-stdout\n', stderr: 'to-stderr\n' }, "the command's stderr passes through, alone");
  t.same(await requests(t, q), [], 'nothing left in the queue');
});

forEachBackend('a command killed by a signal makes wq exit 128 + the signal number', async (t, q) => {
  await q.serve();
  for (const signal of ['SIGKILL', 'SIGTERM', 'SIGUSR1', 'SIGBUS'] as const) {
    const r = await wq(['enqueue', ...q.flags, '--wait', '--', 'sh', '-c', `kill -${signal.slice(3)} $$`]);
    t.equal(r.code, 128 + constants.signals[signal], `${signal} → ${128 + constants.signals[signal]}`);
  }
});

forEachBackend('enqueue without --wait prints the id on one line; wq wait prints the output later', async (t, q) => {
  await q.serve();
  const enq = await wq(['enqueue', ...q.flags, '--', 'sh', '-c', 'echo later; echo err-later >&2; exit 3']);
  t.equal(enq.code, 0);
  t.equal(enq.stderr, '');
  t.match(enq.stdout, /^\d{16}-[0-9a-f]{12}\n$/, 'one line, ending in a newline');
  const id = enq.stdout.trim();
  t.same(await wq(['wait', ...q.flags, id]), { code: 3, signal: null, stdout: 'later\n', stderr: 'err-later\n' });
  t.same(await requests(t, q), [], 'claimed');
  t.equal((await wq(['wait', ...q.flags, id])).code, 4, 'a claimed result cannot be claimed twice');
});

forEachBackend('the queue named by the environment; the flag wins over it', async (t, q) => {
  await q.serve();
  const [name, value] = Object.entries(q.env)[0]!;
  const elsewhere = { [name]: `${value}-elsewhere` };
  t.same(await wq(['enqueue', '--wait', '--', 'echo', 'via-env'], { env: q.env }), { code: 0, signal: null, stdout: 'via-env\n', stderr: '' }, `${name} names it`);
  t.same(await wq(['enqueue', '--wait', ...q.flags, '--', 'echo', 'flag'], { env: elsewhere }), { code: 0, signal: null, stdout: 'flag\n', stderr: '' }, `the flag beats ${name}`);
});

forEachBackend('--json with a command: exit code, stdout, stderr, timings; on enqueue without --wait, the id', async (t, q) => {
  await q.serve();
  const r = await wq(['enqueue', ...q.flags, '--wait', '--json', '--', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
  t.equal(r.code, 3, "wq exits with the command's code");
  t.equal(r.stderr, '', 'nothing on stderr: the output is in the JSON');
  const json = onlyJson(t, r.stdout);
  t.match(json, { id: ID, exitCode: 3, ok: true, status: 'normal', signal: null, stdout: 'out\n', stderr: 'err\n' });
  for (const key of ['queuedAt', 'startedAt', 'finishedAt']) t.match(json[key], ISO, `${key} is an ISO time`);
  t.notOk('result' in json || 'error' in json, 'no result or error for a command that ran');
  t.same(await requests(t, q), [], 'the result was claimed');

  const queued = await wq(['enqueue', ...q.flags, '--json', '--', 'printf', 'a\\x00b']);
  t.equal(queued.code, 0);
  const { id } = onlyJson(t, queued.stdout);
  t.match(id, ID);
  const waited = await wq(['wait', ...q.flags, '--json', id]);
  t.equal(waited.code, 0);
  t.match(onlyJson(t, waited.stdout), { id, exitCode: 0, ok: true, status: 'normal', stdout: 'a\u0000b', stderr: '' });

  const binary = await wq(['enqueue', ...q.flags, '--wait', '--json', '--', 'printf', '\\377\\376']);
  t.equal(binary.code, 0);
  t.strictSame(onlyJson(t, binary.stdout).stdout, { base64: Buffer.from([0xff, 0xfe]).toString('base64') }, 'output that is not UTF-8: base64');
});

forEachBackend('--json with a handler server: the result, or the error', async (t, q) => {
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
  await q.serve(['--handler', handler]);
  const ok = await wq(['enqueue', ...q.flags, '--wait', '--json', '--data', '{"n":21}']);
  t.equal(ok.code, 0);
  t.equal(ok.stderr, '');
  const json = onlyJson(t, ok.stdout);
  t.match(json, { id: ID, exitCode: 0, ok: true, status: 'normal' });
  t.strictSame(json.result, { doubled: 42, id: json.id }, 'the value the handler returned');
  t.notOk('stdout' in json || 'stderr' in json || 'error' in json, 'no command fields');

  const failed = await wq(['enqueue', ...q.flags, '--wait', '--json', '--data', '{"fail":true}']);
  t.equal(failed.code, 1, 'a failed task exits 1');
  const error = onlyJson(t, failed.stdout);
  t.match(error, { id: ID, exitCode: 1, ok: false, status: 'error' });
  t.strictSame(error.error, { name: 'RangeError', message: 'no can do', code: 'E_NOPE' }, 'name, message and code, no stack');
  t.notOk('result' in error);

  const plain = await wq(['enqueue', ...q.flags, '--wait', '--data', '{"n":1}']);
  t.equal(plain.code, 0);
  t.match(plain.stdout, /^\{"doubled":2,"id":"\d{16}-[0-9a-f]{12}"\}\n$/, 'without --json: the result as one JSON line');
  const plainFailed = await wq(['enqueue', ...q.flags, '--wait', '--data', '{"fail":true}']);
  t.equal(plainFailed.code, 1);
  t.equal(plainFailed.stdout, '');
  t.match(plainFailed.stderr, /^wq: request \S+ failed: RangeError: no can do\n$/);
});

forEachBackend('--timeout: exit 124, deadline total, the request is aborted; the message names --timeout', async (t, q) => {
  const dir = realpathSync(t.testdir());
  // No server: nothing ever starts.
  const r = await wq(['enqueue', ...q.flags, '--wait', '--json', '--timeout', '0.3', '--', 'touch', join(dir, 'ran')]);
  t.equal(r.code, 124);
  const json = onlyJson(t, r.stdout);
  t.match(json, { id: ID, exitCode: 124, ok: false, status: 'timed_out', deadline: 'total' });
  t.match(json.error, { name: 'WorkQueueTimeoutError', code: 'ERR_TIMEOUT', message: /total timeout of 0\.3 s/ });
  const listed = (await requests(t, q)).find((req) => req.id === json.id);
  t.ok(listed === undefined || listed.aborting === true, 'aborted: gone, or its abort filed');

  const id = (await wq(['enqueue', ...q.flags, '--quiet', '--', 'true'])).stdout.trim();
  const text = await wq(['wait', ...q.flags, '--timeout', '0.2', id]);
  t.equal(text.code, 124);
  t.equal(text.stdout, '');
  t.equal(
    text.stderr,
    `wq: no server is running on ${q.where}; the request stays queued until \`wq serve\` starts\n` + `wq: timed out after 0.2 s (--timeout) waiting for ${id}; the request was aborted\n`,
    'the message names --timeout (after saying that no server runs)',
  );
  const other = (await wq(['enqueue', ...q.flags, '--quiet', '--', 'true'])).stdout.trim();
  const waited = await wq(['wait', ...q.flags, '--json', '--timeout', '0.2', other]);
  t.equal(waited.code, 124);
  t.match(onlyJson(t, waited.stdout), { id: other, status: 'timed_out', deadline: 'total' });

  await q.serve();
  await waitFor(async () => (await requests(t, q)).length === 0, 'the server to carry out the aborts');
  t.same(await wq(['enqueue', ...q.flags, '--wait', '--', 'echo', 'next']), { code: 0, signal: null, stdout: 'next\n', stderr: '' }, 'the line moves on');
  t.notOk(existsSync(join(dir, 'ran')), 'the timed-out request never ran');
});

forEachBackend('--run-timeout: exit 124, deadline run, the command is killed; the message names --run-timeout', async (t, q) => {
  const dir = realpathSync(t.testdir());
  await q.serve();
  const pidFile = join(dir, 'sleep.pid');
  const r = await wq(['enqueue', ...q.flags, '--wait', '--json', '--run-timeout', '0.5', '--', 'sh', '-c', `echo $$ > ${sq(pidFile)}; exec sleep 5`]);
  t.equal(r.code, 124);
  const json = onlyJson(t, r.stdout);
  t.match(json, { id: ID, exitCode: 124, ok: false, status: 'timed_out', deadline: 'run' });
  t.match(json.error, { name: 'RunTimeoutError', code: 'ERR_RUN_TIMEOUT', message: /run timeout of 0\.5 s/ });
  const pid = readPid(pidFile);
  t.type(pid, 'number', 'the command ran and wrote its pid');
  await waitFor(() => isGone(pid!), 'the sleep to be killed');

  const pidFile2 = join(dir, 'sleep2.pid');
  const text = await wq(['enqueue', ...q.flags, '--wait', '--run-timeout', '0.5', '--', 'sh', '-c', `echo $$ > ${sq(pidFile2)}; exec sleep 5`]);
  t.equal(text.code, 124);
  t.equal(text.stdout, '');
  t.match(text.stderr, /^wq: request \S+ ran longer than its run timeout \(--run-timeout 0\.5 s\); it was terminated\n$/);
  await waitFor(() => isGone(readPid(pidFile2)!), 'the second sleep to be killed');
  t.same(await requests(t, q), [], 'nothing left');
});

forEachBackend('--quiet, no server: no warning, the id still printed; a timeout says nothing', async (t, q) => {
  const loud = await wq(['enqueue', ...q.flags, '--', 'true']);
  t.equal(loud.code, 0);
  t.match(loud.stdout, /^\d{16}-[0-9a-f]{12}\n$/);
  t.equal(loud.stderr, `wq: no server is running on ${q.where}; the request stays queued until \`wq serve\` starts\n`);

  const quiet = await wq(['enqueue', ...q.flags, '--quiet', '--', 'true']);
  t.equal(quiet.code, 0);
  t.match(quiet.stdout, /^\d{16}-[0-9a-f]{12}\n$/, 'the id is still printed');
  t.equal(quiet.stderr, '', 'no warning');
  t.same((await requests(t, q)).map((r) => r.id), [loud.stdout.trim(), quiet.stdout.trim()], 'both were queued');

  t.same(await wq(['enqueue', ...q.flags, '--wait', '-q', '--timeout', '0.2', '--', 'true']), { code: 124, signal: null, stdout: '', stderr: '' }, 'still exits 124, but says nothing');
});

forEachBackend('--quiet, served: the command’s output and exit code only', async (t, q) => {
  await q.serve();
  t.strictSame(await wq(['enqueue', ...q.flags, '--wait', '--quiet', '--', 'sh', '-c', 'echo out; echo err >&2; exit 5']), { code: 5, signal: null, stdout: 'out\n', stderr: 'err\n' });
  t.strictSame(await wq(['enqueue', ...q.flags, '--wait', '--quiet', '--run-timeout', '0.2', '--', 'sleep', '5']), { code: 124, signal: null, stdout: '', stderr: '' }, 'a run timeout, quietly');
});

forEachBackend('wq wait --json for an unknown id: exit 4', async (t, q) => {
  await q.serve();
  const id = '1700000000000000-0123456789ab';
  const r = await wq(['wait', ...q.flags, '--json', id]);
  t.equal(r.code, 4);
  t.match(onlyJson(t, r.stdout), { id, exitCode: 4, ok: false, status: 'unknown', error: { code: 'ERR_UNKNOWN_REQUEST' } });
});

forEachBackend('enqueue --wait -- seq 1 2000000 > file: all of the output, byte for byte, exit 0', async (t, q) => {
  const dir = realpathSync(t.testdir());
  await q.serve();
  const expected = execFileSync(BIG[0]!, BIG.slice(1), { maxBuffer: 64 * 1024 * 1024 });
  const out = await runToFile(['enqueue', ...q.flags, '--wait', '--', ...BIG], join(dir, 'big.txt'));
  t.equal(out.code, 0, 'exit 0');
  t.equal(out.bytes.length, expected.length, `all ${expected.length} bytes`);
  t.ok(out.bytes.equals(expected), 'the same bytes as seq itself');
  t.equal(out.stderr, '', 'no warning');
  t.same(await requests(t, q), [], 'claimed');
});

forEachBackend('--max-output: output past the limit fails the request with a message naming it, also with -q; the next one runs', async (t, q) => {
  const dir = realpathSync(t.testdir());
  await q.serve(['--max-output', '1M']);
  for (const quiet of [false, true]) {
    const out = await runToFile(['enqueue', ...q.flags, '--wait', ...(quiet ? ['-q'] : []), '--', ...BIG], join(dir, 'cut.txt'));
    t.not(out.code, 0, `non-zero exit${quiet ? ' with -q' : ''} (${out.code})`);
    t.match(out.stderr, /more than 1 MiB of output/, 'says the output went past the limit');
    t.match(out.stderr, /--max-output/, 'names the option');
    t.ok(out.bytes.length < 2 * 1024 * 1024, 'nothing past the limit is printed as if it were all of it');
  }
  const json = await wq(['enqueue', ...q.flags, '--wait', '--json', '--', ...BIG]);
  t.equal(json.code, 1);
  t.match(JSON.parse(json.stdout), { ok: false, status: 'error', error: { code: 'ERR_OUTPUT_LIMIT' } }, '--json carries the error code');
  t.same(await wq(['enqueue', ...q.flags, '--wait', '--', 'echo', 'still serving']), { code: 0, signal: null, stdout: 'still serving\n', stderr: '' }, 'the next request runs');
  t.same(await requests(t, q), [], 'nothing left');
});
