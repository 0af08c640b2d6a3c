/**
 * A command's output through `wq enqueue --wait`, black-box: large output
 * arrives whole (read from logs/, not from the result envelope's capped copy),
 * output past the server's `--max-output` fails the request with a message
 * (also under -q), and a task whose output fills the spool's disk fails alone
 * while the queue goes on serving.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, realpathSync, renameSync, truncateSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { encodeResult } from '../../src/spool/codec.js';
import { logPath, openSpool } from '../../src/spool/layout.js';
import { formatRequestId } from '../../src/spool/request-id.js';
import { CommandTaskManager } from '../../src/task-manager/command.js';
import { spawnWq, startCliServer, waitFor } from '../fixtures/helpers.js';
import { captureStderr, exited, wq } from '../fixtures/cli.js';
import { canMountTmpfs, mountTmpfs } from '../fixtures/tmpfs.js';

/** `seq 1 2000000`: 14.9 MB, far past the 1 MiB per stream a result envelope carries. */
const BIG = ['seq', '1', '2000000'];

/** Runs `wq args > file` and returns its exit code, stderr and the bytes it wrote. */
async function runToFile(args: string[], file: string): Promise<{ code: number | null; stderr: string; bytes: Buffer }> {
  const fd = openSync(file, 'w');
  const child = spawnWq(args, { stdio: ['ignore', fd, 'pipe'] });
  closeSync(fd);
  const stderr = captureStderr(child);
  const { code } = await exited(child);
  return { code, stderr: stderr.text(), bytes: readFileSync(file) };
}

function logsLeft(spool: string): string[] {
  const dir = join(spool, 'logs');
  return existsSync(dir) ? readdirSync(dir) : [];
}

async function served(t: Test, args: string[] = []): Promise<{ dir: string; spool: string }> {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  await startCliServer(t, spool, args);
  return { dir, spool };
}

t.test('enqueue --wait -- seq 1 2000000 > file: all of the output, byte for byte, exit 0', async (t) => {
  const { dir, spool } = await served(t);
  const expected = execFileSync(BIG[0]!, BIG.slice(1), { maxBuffer: 64 * 1024 * 1024 });
  const out = await runToFile(['enqueue', '--spool', spool, '--wait', '--', ...BIG], join(dir, 'big.txt'));
  t.equal(out.code, 0, 'exit 0');
  t.equal(out.bytes.length, expected.length, `all ${expected.length} bytes`);
  t.ok(out.bytes.equals(expected), 'the same bytes as seq itself');
  t.equal(out.stderr, '', 'no warning');
  t.strictSame(logsLeft(spool), [], 'the logs are removed once read');
});

t.test('--max-output: output past the limit fails the request with a message naming it, also with -q', async (t) => {
  const { dir, spool } = await served(t, ['--max-output', '1M']);
  for (const quiet of [false, true]) {
    const args = ['enqueue', '--spool', spool, '--wait', ...(quiet ? ['-q'] : []), '--', ...BIG];
    const out = await runToFile(args, join(dir, 'cut.txt'));
    t.not(out.code, 0, `non-zero exit${quiet ? ' with -q' : ''} (${out.code})`);
    t.match(out.stderr, /more than 1 MiB of output/, 'says the output went past the limit');
    t.match(out.stderr, /--max-output/, 'names the option');
    t.ok(out.bytes.length < 2 * 1024 * 1024, 'nothing past the limit is printed as if it were all of it');
  }
  const json = await wq(['enqueue', '--spool', spool, '--wait', '--json', '--', ...BIG]);
  t.equal(json.code, 1);
  t.match(JSON.parse(json.stdout), { ok: false, status: 'error', error: { code: 'ERR_OUTPUT_LIMIT' } }, '--json carries the error code');
  t.strictSame(logsLeft(spool), [], "the stopped tasks' logs are removed");
  const next = await wq(['enqueue', '--spool', spool, '--wait', '--', 'echo', 'still serving']);
  t.same({ code: next.code, stdout: next.stdout }, { code: 0, stdout: 'still serving\n' }, 'the next request runs');
});

t.test('output whose log is gone by the time it is claimed: wq wait prints what it has and exits 1 saying it was cut, also with -q', async (t) => {
  const { dir, spool } = await served(t);
  for (const quiet of [false, true]) {
    const id = (await wq(['enqueue', '--spool', spool, '--', ...BIG])).stdout.trim();
    await waitFor(() => existsSync(join(spool, 'complete', id)), 'the result', 60_000);
    unlinkSync(join(spool, 'logs', `${id}.stdout`)); // as an operator's clean-up, or housekeeping after an hour, would
    const out = await runToFile(['wait', '--spool', spool, ...(quiet ? ['-q'] : []), id], join(dir, 'cut.txt'));
    t.equal(out.code, 1, `exit 1${quiet ? ' with -q' : ''}`);
    t.match(out.stderr, /the output was cut: the last \d+ bytes of stdout were lost/, 'says so');
    t.equal(out.bytes.length, 1024 * 1024, 'the part the result carried');
  }
});

t.test('--max-output takes sizes with K, M, G suffixes, refuses anything else, and only applies to commands', async (t) => {
  const dir = realpathSync(t.testdir());
  const bad = await wq(['serve', '--spool', join(dir, 'spool'), '--max-output', '10 parsecs']);
  t.equal(bad.code, 2, 'a usage error');
  t.match(bad.stderr, /--max-output/);
  t.match(bad.stderr, /expected a size/);
  const handler = await wq(['serve', '--spool', join(dir, 'spool'), '--handler', 'whatever.js', '--max-output', '1M']);
  t.equal(handler.code, 2, 'with --handler: a usage error, not a limit silently ignored');
  t.match(handler.stderr, /--max-output limits the output of commands/);
});

t.test(
  'disk full, for real: output that fills a 4 MiB tmpfs spool fails that request with ERR_DISK_FULL; the next request runs',
  { skip: !canMountTmpfs && 'cannot mount a tmpfs here (not root?)' },
  async (t) => {
    for (const durable of [false, true]) await t.test(durable ? 'durable' : 'default', (t) => fillTheDisk(t, durable));
  },
);

async function fillTheDisk(t: Test, durable: boolean): Promise<void> {
  const dir = realpathSync(t.testdir());
  const spool = join(mountTmpfs(t, '4m'), 'spool');
  await startCliServer(t, spool, ['--max-tasks', '1', ...(durable ? ['--durable'] : [])]);
  // 3 MiB fits in the logs, but not beside its own result; 8 MiB does not fit at all.
  for (const mib of [3, 8]) {
    const script = `echo ran >> ran-${mib}; head -c ${mib * 1024 * 1024} /dev/zero`;
    const out = await wq(['enqueue', '--spool', spool, '--wait', '--json', '--', 'sh', '-c', script], { cwd: dir });
    t.equal(out.code, 1, `${mib} MiB: the request fails`);
    const result = JSON.parse(out.stdout) as { ok: boolean; error?: { code?: string; message: string } };
    t.match(result, { ok: false, error: { code: 'ERR_DISK_FULL' } }, `${mib} MiB: with ERR_DISK_FULL`);
    t.match(result.error?.message ?? '', /disk is full/, `${mib} MiB: a clear message (${result.error?.message})`);
    t.strictSame(logsLeft(spool), [], `${mib} MiB: its logs are removed, freeing the disk`);
    const next = await wq(['enqueue', '--spool', spool, '--wait', '--', 'echo', 'next'], { cwd: dir });
    t.same({ code: next.code, stdout: next.stdout }, { code: 0, stdout: 'next\n' }, `${mib} MiB: the next request runs and succeeds`);
    t.equal(readFileSync(join(dir, `ran-${mib}`), 'utf8'), 'ran\n', `${mib} MiB: the failed task ran once`);
  }
}

t.test('--max-output above 1G (what a client can hold and read back whole) is a usage error, and so is a library maxOutputBytes above it with logs', async (t) => {
  const dir = realpathSync(t.testdir());
  for (const size of ['5G', '1025M', '2T']) {
    const r = await wq(['serve', '--spool', join(dir, 'spool'), '--max-output', size]);
    t.equal(r.code, 2, `--max-output ${size}: a usage error`);
    t.match(r.stderr, /--max-output/, 'names the option');
    t.match(r.stderr, /from 1 to 1G/, 'says the most it takes');
  }
  t.strictSame(existsSync(join(dir, 'spool')), false, 'no spool was made');
  const logDir = join(dir, 'logs');
  for (const maxOutputBytes of [2 ** 30 + 1, Infinity]) {
    t.throws(() => new CommandTaskManager({ maxOutputBytes, logDir }), { code: 'ERR_INVALID_OPTION', message: /maxOutputBytes.*<= 1073741824/ }, `maxOutputBytes ${maxOutputBytes} with logs`);
  }
  t.doesNotThrow(() => new CommandTaskManager({ maxOutputBytes: 2 ** 30, logDir }), '1 GiB itself is allowed');
  t.doesNotThrow(() => new CommandTaskManager({ maxOutputBytes: Infinity }), 'without logs nothing is read back: no cap');
});

t.test('a result whose log is longer than any server writes (over 1 GiB: damaged or forged): wq wait prints what it has, exits 1 saying it was cut, and the result is claimed, not lost', async (t) => {
  const dir = realpathSync(t.testdir());
  const paths = openSpool(join(dir, 'spool'));
  const id = formatRequestId(Date.now() * 1000, '0123456789ab');
  const inline = Buffer.alloc(16); // a sparse log reads as zeros
  const logBytes = 2 ** 30 + 1;
  // A log as long as the result says, and longer than --max-output allows: sparse, so it takes no disk.
  truncateSync(openAndClose(logPath(paths, id, 'stdout')), logBytes);
  const value = { exitCode: 0, signal: null, stdout: inline, stderr: Buffer.alloc(0), stdoutDropped: logBytes - inline.length };
  writeFileSync(join(paths.dirs.tmp, 'result'), encodeResult({ id, ok: true, status: 'normal', logs: true, value, finishedAt: Date.now() }));
  renameSync(join(paths.dirs.tmp, 'result'), join(paths.dirs.complete, id));
  const out = await runToFile(['wait', '--spool', paths.root, id], join(dir, 'out.bin'));
  t.equal(out.code, 1, 'exit 1');
  t.match(out.stderr, /the output was cut: the last \d+ bytes of stdout were lost/, 'says so');
  t.ok(out.bytes.equals(inline), 'the part the result carried');
  t.notOk(existsSync(join(paths.dirs.complete, id)), 'the result was claimed');
});

function openAndClose(path: string): string {
  closeSync(openSync(path, 'w'));
  return path;
}

t.test('--json with output too long for one JSON string: the first MiB per stream, the rest counted as dropped, exit 1 with a message, and the result claimed, not lost', async (t) => {
  const dir = realpathSync(t.testdir());
  const paths = openSpool(join(dir, 'spool'));
  const id = formatRequestId(Date.now() * 1000, '0123456789ab');
  // 300 million newlines: one string in memory, but 600 million characters once escaped for JSON.
  const logBytes = 300_000_000;
  const chunk = Buffer.alloc(16 * 1024 * 1024, '\n');
  const fd = openSync(logPath(paths, id, 'stdout'), 'w');
  for (let written = 0; written < logBytes; ) written += writeSync(fd, chunk, 0, Math.min(chunk.length, logBytes - written));
  closeSync(fd);
  const inline = Buffer.alloc(16, '\n');
  const value = { exitCode: 0, signal: null, stdout: inline, stderr: Buffer.alloc(0), stdoutDropped: logBytes - inline.length };
  writeFileSync(join(paths.dirs.tmp, 'result'), encodeResult({ id, ok: true, status: 'normal', logs: true, value, finishedAt: Date.now() }));
  renameSync(join(paths.dirs.tmp, 'result'), join(paths.dirs.complete, id));
  const out = await runToFile(['wait', '--spool', paths.root, '--json', id], join(dir, 'out.json'));
  t.equal(out.code, 1, 'exit 1');
  t.match(out.stderr, /too long for --json/, 'says why the output was cut');
  const json = JSON.parse(out.bytes.toString()) as { ok: boolean; exitCode: number; stdout: string; stdoutDropped: number };
  t.match(json, { ok: true, exitCode: 1, stdoutDropped: logBytes - 1024 * 1024 }, 'the rest is counted as dropped');
  t.equal(json.stdout, '\n'.repeat(1024 * 1024), 'the first MiB of stdout');
  t.notOk(existsSync(join(paths.dirs.complete, id)), 'the result was claimed');
});
