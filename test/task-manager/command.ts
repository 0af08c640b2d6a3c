/**
 * CommandTaskManager for real: commands run as child processes by a real
 * WorkQueueServer on a temp spool; results come back through a real client.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { WorkQueueClient } from '../../src/client.js';
import { TaskFailedError, UnknownRequestError } from '../../src/errors.js';
import { CommandTaskManager, type CommandResult, type CommandTaskManagerOptions } from '../../src/task-manager/command.js';
import { rejectionOf, spoolContents, startServer, waitFor } from '../fixtures/helpers.js';
import { isGone, killQuietly, readPid } from '../fixtures/processes.js';

/** Waits never last forever: a task that hangs fails its test with a WorkQueueTimeoutError. */
const LIMIT = { timeoutMs: 20_000 };

interface Served {
  dir: string;
  spool: string;
  client: WorkQueueClient;
}

function serveCommands(t: Test, options: CommandTaskManagerOptions = {}): Served {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  startServer(t, new CommandTaskManager({ killGraceMs: 2000, ...options }), { spool });
  const client = new WorkQueueClient({ spool });
  t.teardown(() => client.close());
  return { dir, spool, client };
}

async function run(client: WorkQueueClient, argv: string[], cwd?: string): Promise<CommandResult> {
  return (await client.run(cwd === undefined ? { argv } : { argv, cwd }, LIMIT)) as CommandResult;
}

const text = (bytes: Uint8Array): string => Buffer.from(bytes).toString('utf8');


t.test('exit code, stdout and stderr come back', async (t) => {
  const { client } = serveCommands(t);
  const result = await run(client, ['sh', '-c', 'echo out; echo err >&2; exit 7']);
  t.equal(result.exitCode, 7);
  t.equal(result.signal, null);
  t.equal(text(result.stdout), 'out\n');
  t.equal(text(result.stderr), 'err\n');
  t.notOk('stdoutDropped' in result || 'stderrDropped' in result, 'nothing dropped');

  const ok = await run(client, ['true']);
  t.equal(ok.exitCode, 0);
  t.equal(text(ok.stdout), '');
});

t.test('the order of the two streams: recorded as runs, or exact with stderrToStdout', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const logs = join(spool, 'logs');
  startServer(t, new CommandTaskManager({ logDir: logs }), { spool });
  const client = new WorkQueueClient({ spool });
  t.teardown(() => client.close());
  // Each write waits for its gate, which the test opens once the server has logged the write before: the order is certain.
  const gate = (name: string): string => `until [ -e ${join(dir, name)} ]; do sleep 0.01; done`;
  const pending = run(client, ['sh', '-c', `echo 1; ${gate('a')}; echo 2 >&2; ${gate('b')}; echo 3`]);
  const logged = (suffix: string) => (): boolean => readdirSync(logs).some((name) => name.endsWith(suffix) && statSync(join(logs, name)).size > 0);
  await waitFor(logged('.stdout'), 'the server to read the first write');
  writeFileSync(join(dir, 'a'), '');
  await waitFor(logged('.stderr'), 'the server to read the second write');
  writeFileSync(join(dir, 'b'), '');
  const separate = await pending;
  t.equal(text(separate.stdout), '1\n3\n', 'the streams stay apart');
  t.equal(text(separate.stderr), '2\n');
  t.strictSame(separate.order, [2, 2, 2], 'with the order they came in');

  const joined = (await client.run({ argv: ['sh', '-c', 'echo 1; echo 2 >&2; echo 3'], stderrToStdout: true }, LIMIT)) as CommandResult;
  t.equal(text(joined.stdout), '1\n2\n3\n', 'joined: one stream, in the order written');
  t.equal(text(joined.stderr), '');
  t.notOk('order' in joined, 'one stream: nothing to order');
});

t.test('a command killed by a signal reports the signal and no exit code', async (t) => {
  const { client } = serveCommands(t);
  const term = await run(client, ['sh', '-c', 'kill -TERM $$']);
  t.equal(term.exitCode, null);
  t.equal(term.signal, 'SIGTERM');
  const usr1 = await run(client, ['sh', '-c', 'kill -USR1 $$']);
  t.equal(usr1.signal, 'SIGUSR1');
});

t.test('a command runs in the request cwd, without a shell', async (t) => {
  const { dir, client } = serveCommands(t);
  const result = await run(client, ['pwd'], dir);
  t.equal(text(result.stdout), `${dir}\n`);
  const literal = await run(client, ['echo', '$HOME', '*', 'a;b']);
  t.equal(text(literal.stdout), '$HOME * a;b\n', 'arguments reach the program untouched');
});

t.test('without logs, output past inlineOutputBytes is dropped and counted, per stream', async (t) => {
  const { client } = serveCommands(t, { inlineOutputBytes: 1000 });
  const full = execFileSync('seq', ['1', '3000']);
  const result = await run(client, ['seq', '1', '3000']);
  t.equal(result.stdout.length, 1000, 'stdout capped');
  t.equal(text(result.stdout), full.subarray(0, 1000).toString(), 'the first bytes are kept');
  t.equal(result.stdoutDropped, full.length - 1000, 'the rest is counted');
  t.notOk('stderrDropped' in result);

  const err = await run(client, ['sh', '-c', 'seq 1 3000 >&2; echo small']);
  t.equal(err.stderr.length, 1000, 'stderr capped');
  t.equal(err.stderrDropped, full.length - 1000);
  t.equal(text(err.stdout), 'small\n');
  t.notOk('stdoutDropped' in err);
});

t.test('with logs, the client reads the whole output back from them; past maxOutputBytes the request fails with ERR_OUTPUT_LIMIT', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  startServer(t, new CommandTaskManager({ inlineOutputBytes: 1000, maxOutputBytes: 32 * 1024, logDir: join(spool, 'logs') }), { spool });
  const client = new WorkQueueClient({ spool });
  t.teardown(() => client.close());
  const full = execFileSync('seq', ['1', '3000']);
  const result = await run(client, ['sh', '-c', 'seq 1 3000; seq 1 3000 >&2']);
  t.ok(Buffer.from(result.stdout).equals(full), 'all of stdout, though only 1000 bytes rode in the result');
  t.ok(Buffer.from(result.stderr).equals(full), 'all of stderr');
  t.notOk('stdoutDropped' in result || 'stderrDropped' in result, 'nothing reported lost');

  const err = await rejectionOf(t, run(client, ['seq', '1', '100000']));
  t.type(err, TaskFailedError);
  t.equal(err.code, 'ERR_OUTPUT_LIMIT');
  t.match(err.message, /more than 32 KiB of output/);
  await waitFor(() => readdirSync(join(spool, 'logs')).length === 0, 'no logs left');
});

t.test('output limits must be whole byte counts', async (t) => {
  for (const bad of [-1, 1.5, NaN, '1M' as unknown as number]) {
    t.throws(() => new CommandTaskManager({ maxOutputBytes: bad }), { code: 'ERR_INVALID_OPTION', message: /Expected `maxOutputBytes` to be an integer >= 0/ });
    t.throws(() => new CommandTaskManager({ inlineOutputBytes: bad }), { code: 'ERR_INVALID_OPTION', message: /Expected `inlineOutputBytes`/ });
  }
  t.doesNotThrow(() => new CommandTaskManager({ maxOutputBytes: Infinity, inlineOutputBytes: 0 }), 'Infinity: no limit; 0: nothing inline');
});

t.test('a command prefix gets the request argv appended', async (t) => {
  const { client } = serveCommands(t, { command: ['echo', 'prefix'] });
  t.equal(text((await run(client, ['a', 'b c'])).stdout), 'prefix a b c\n');
  t.equal(text((await run(client, [])).stdout), 'prefix\n', 'an empty argv runs the prefix alone');
});

t.test('a missing program fails the request with "command not found"', async (t) => {
  const { client } = serveCommands(t);
  const err = await rejectionOf(t, run(client, ['wq-test-no-such-program', 'x']));
  t.type(err, TaskFailedError);
  t.match(err.message, /command not found/);
  t.match(err.message, /wq-test-no-such-program/);
  t.equal(err.code, 'ENOENT');
  t.equal(err.remote.name, 'CommandError');
  t.equal(text((await run(client, ['echo', 'next'])).stdout), 'next\n', 'the server goes on');
});

t.test('a working directory that does not exist fails the request with a clear error', async (t) => {
  const { dir, client } = serveCommands(t);
  const missing = join(dir, 'no-such-dir');
  const err = await rejectionOf(t, run(client, ['pwd'], missing));
  t.type(err, TaskFailedError);
  t.equal(err.code, 'ERR_BAD_CWD');
  t.match(err.message, missing);
  t.match(err.message, /does not exist/);

  writeFileSync(join(dir, 'a-file'), '');
  const notDir = await rejectionOf(t, run(client, ['pwd'], join(dir, 'a-file')));
  t.equal(notDir?.code, 'ERR_BAD_CWD', 'a file is not a working directory');
  t.equal(text((await run(client, ['pwd'], dir)).stdout), `${dir}\n`, 'the server goes on');
});

t.test('invalid request bodies get an error result and the server keeps working', async (t) => {
  const { client } = serveCommands(t);
  const bodies: unknown[] = [{}, { argv: [] }, { argv: 'echo hi' }, { argv: ['echo', 1] }, { argv: [null] }, 'echo hi', null, { argv: [''] }];
  for (const body of bodies) {
    const err = await rejectionOf(t, client.run(body, LIMIT));
    t.type(err, TaskFailedError, JSON.stringify(body));
    t.equal(err?.code, 'ERR_BAD_REQUEST', JSON.stringify(body));
  }
  const badCwd = await rejectionOf(t, client.run({ argv: ['true'], cwd: 5 }, LIMIT));
  t.equal(badCwd?.code, 'ERR_BAD_CWD', 'a cwd that is not a string');
  t.equal(text((await run(client, ['echo', 'still ok'])).stdout), 'still ok\n');
});

t.test('a background child holding the pipes does not hold back the result', async (t) => {
  const { dir, client } = serveCommands(t);
  const result = await run(client, ['sh', '-c', 'echo $$ > sh.pid; sleep 60 & echo done'], dir);
  const pgid = readPid(join(dir, 'sh.pid'));
  t.teardown(() => killQuietly(-pgid!)); // the background sleep, still in the command's group
  t.equal(result.exitCode, 0);
  t.equal(text(result.stdout), 'done\n');
});

/** Starts `script` (which must write sh.pid and sleep.pid in its cwd) and returns the pids. */
async function startStuck(t: Test, s: Served, script: string): Promise<{ id: string; sh: number; sleep: number }> {
  const id = await s.client.enqueue({ argv: ['sh', '-c', script], cwd: s.dir });
  const [sh, sleep] = (await waitFor(() => {
    const pids = [readPid(join(s.dir, 'sh.pid')), readPid(join(s.dir, 'sleep.pid'))];
    return pids.every((p) => p !== undefined) ? (pids as number[]) : undefined;
  }, 'the command to record its pids'))! as [number, number];
  t.teardown(() => {
    killQuietly(-sh);
    killQuietly(sleep);
  });
  t.notOk(isGone(sh) || isGone(sleep), 'both run before the abort');
  return { id, sh, sleep };
}

t.test('aborting a running command kills its whole process group', async (t) => {
  const s = serveCommands(t, { killGraceMs: 2000 });
  const stuck = await startStuck(t, s, 'sleep 60 & echo $! > sleep.pid; echo $$ > sh.pid; wait');
  await s.client.abort(stuck.id);
  await waitFor(() => isGone(stuck.sh), `sh ${stuck.sh} to be gone`);
  await waitFor(() => isGone(stuck.sleep), `grandchild sleep ${stuck.sleep} to be gone`);
  t.equal(text((await run(s.client, ['echo', 'next'])).stdout), 'next\n', 'the next request runs');
  t.notOk(spoolContents(s.spool).complete.includes(stuck.id), 'the aborted command has no result');
  t.type(await rejectionOf(t, s.client.wait(stuck.id, LIMIT)), UnknownRequestError);
});

t.test('a command group that ignores SIGTERM is killed with SIGKILL after killGraceMs', async (t) => {
  const s = serveCommands(t, { killGraceMs: 300 });
  // The ignored SIGTERM is inherited by the background sleep too.
  const stuck = await startStuck(t, s, 'trap "" TERM; sleep 60 & echo $! > sleep.pid; echo $$ > sh.pid; while :; do wait; done');
  await s.client.abort(stuck.id);
  await waitFor(() => isGone(stuck.sh), `sh ${stuck.sh} to be gone`);
  await waitFor(() => isGone(stuck.sleep), `grandchild sleep ${stuck.sleep} to be gone`);
  t.equal(text((await run(s.client, ['echo', 'next'])).stdout), 'next\n', 'the next request runs');
});

t.test('killGraceMs must be a finite number >= 0: terminating a task must not fail for want of one', async (t) => {
  for (const killGraceMs of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
    t.throws(() => new CommandTaskManager({ killGraceMs }), { code: 'ERR_INVALID_OPTION', message: `Expected \`killGraceMs\` to be a finite number >= 0, got \`${killGraceMs}\` (number)` });
  }
  t.ok(new CommandTaskManager({ killGraceMs: 30 * 24 * 3600_000 }), 'thirty days is a valid grace');
});

t.test('hasEnded: a command that exited has ended before its outcome is ready, even before the event loop read its exit', async (t) => {
  const manager = new CommandTaskManager();
  t.teardown(() => manager.close());
  const pid = manager.startTask('a', { argv: ['sleep', '0.05'] })!.pid;
  t.equal(manager.hasEnded('a'), false, 'running: not ended');
  // Block this thread (as a SIGSTOP of the server would) until the kernel holds the command as a zombie.
  const blocked = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + 30_000;
  while (!isGone(pid) && Date.now() < deadline) Atomics.wait(blocked, 0, 0, 10);
  t.ok(isGone(pid), 'the command exited while the event loop was blocked');
  t.equal(manager.hasEnded('a'), true, 'ended, though Node has not reported its exit');
  t.strictSame([...manager.reap()], [], 'its outcome is not ready yet');
  const reaped = await waitFor(() => {
    const outcomes = [...manager.reap()];
    return outcomes.length > 0 ? outcomes : undefined;
  }, 'its outcome');
  t.match(reaped, [['a', { ok: true, value: { exitCode: 0 } }]]);
  t.equal(manager.hasEnded('a'), false, 'reaped: no longer a task of the manager');
  t.equal(manager.hasEnded('unknown'), false);
});

t.test('a terminated group holds its capacity slot until it is gone', async (t) => {
  const s = serveCommands(t, { maxTasks: 1, killGraceMs: 30_000 });
  // The leader exits at once on SIGTERM; the TERM-ignoring grandchild must still be swept.
  const stuck = await startStuck(t, s, '(trap "" TERM; exec sleep 60) & echo $! > sleep.pid; echo $$ > sh.pid; wait');
  await s.client.abort(stuck.id);
  // Gone or a zombie (dead, waiting for init to reap it): field 3 of /proc/<pid>/stat.
  const probe = `s=$(cut -d' ' -f3 /proc/${stuck.sleep}/stat 2>/dev/null); if [ -z "$s" ] || [ "$s" = Z ]; then echo gone; else echo alive; fi`;
  const next = await run(s.client, ['sh', '-c', probe]);
  t.equal(text(next.stdout), 'gone\n', 'the next command starts only once the whole old group is gone');
});

/** printenv's variables, without what tap's process tracking adds to every child it spawns (some of it on several lines). */
const variables = (result: CommandResult): string[] =>
  text(result.stdout)
    .split('\n')
    .filter((line) => /^[A-Za-z_][A-Za-z0-9_]*=/.test(line) && !line.startsWith('_TAPJS_') && !line.startsWith('NODE_OPTIONS='))
    .sort();

t.test("the library's env, replaceEnv and stdin reach the command; its PWD is its directory", async (t) => {
  const { dir, client } = serveCommands(t, { env: { PATH: process.env.PATH, SERVER_ONLY: '1', OLDPWD: '/root' } });
  const env = (await client.run({ argv: ['printenv'], cwd: dir }, { ...LIMIT, env: { CC: 'clang' } })) as CommandResult;
  t.same(variables(env), [`CC=clang`, `PATH=${process.env.PATH}`, `PWD=${dir}`, 'SERVER_ONLY=1']);
  const whole = (await client.run({ argv: ['/usr/bin/env'] }, { ...LIMIT, env: { ONLY: 'this' }, replaceEnv: true })) as CommandResult;
  t.same(variables(whole), ['ONLY=this', `PWD=${process.cwd()}`], "replaceEnv: none of the server's variables; PWD the server's directory when the request names none");
  const cat = (await client.run({ argv: ['cat'] }, { ...LIMIT, stdin: 'typed\n' })) as CommandResult;
  t.equal(text(cat.stdout), 'typed\n', 'a string is sent as UTF-8 to its stdin');
  for (const [options, message] of [
    [{ env: { A: 1 } }, /Expected `env` to be a map of variable names to strings, but it gives A a number/],
    [{ env: { 'A=B': '1' } }, /name contains "="/],
    [{ replaceEnv: 'yes' }, /Expected `replaceEnv` to be a boolean/],
    [{ stdin: 42 }, /Expected `stdin` to be a Uint8Array or a string/],
  ] as const) {
    await t.rejects(client.enqueue({ argv: ['true'] }, options as never), { code: 'ERR_INVALID_OPTION', message });
  }
});

t.test('with a fixed command, a request may set only the acceptEnv names (none by default)', async (t) => {
  const { client } = serveCommands(t, { command: ['printenv'] });
  const err = await rejectionOf(t, client.run({ argv: ['A'] }, { ...LIMIT, env: { A: '1' } }));
  t.type(err, TaskFailedError);
  t.equal(err.code, 'ERR_ENV_REFUSED');
  t.match(err.message, /takes no environment variables from requests/);
  const open = serveCommands(t, { command: ['printenv'], acceptEnv: ['A'] });
  t.equal(text(((await open.client.run({ argv: ['A'] }, { ...LIMIT, env: { A: '1' } })) as CommandResult).stdout), '1\n');
  t.throws(() => new CommandTaskManager({ acceptEnv: ['A=B'] }), { code: 'ERR_INVALID_OPTION', message: /Expected `acceptEnv` to be 'all' or an array of variable names/ });
});
