/**
 * What a task gets besides its argv, on every backend
 * (test/fixtures/backends.ts): its environment (`--env`, `--env-all`,
 * `wq serve --accept-env`), its standard input (`--stdin`; else /dev/null), a
 * request read from a file or stdin (`--data @FILE`, `--data -`), and what
 * happens to the background children it leaves. Observed through `wq` and
 * files the tasks write only.
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { wq } from '../fixtures/cli.js';
import { forEachBackend, type QueueUnderTest } from '../fixtures/backends.js';
import { collect } from '../fixtures/gates.js';
import { waitFor, WQ } from '../fixtures/helpers.js';
import { isGone, killQuietly, readPid } from '../fixtures/processes.js';

/** Variables of `printenv`'s output. */
function parseEnv(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) out.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return out;
}

/** Runs `wq ARGS` with its stdin read from `path`. */
async function wqWithStdinFrom(path: string, args: string[], options: { cwd?: string } = {}) {
  const fd = openSync(path, 'r');
  try {
    return await wq(args, { ...options, stdio: [fd, 'pipe', 'pipe'] });
  } finally {
    closeSync(fd);
  }
}

/** The ids `wq status --json` lists. */
async function listed(t: Test, q: QueueUnderTest): Promise<string[]> {
  const r = await wq(['status', ...q.flags, '--json']);
  t.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { requests: Array<{ id: string }> }).requests.map((r) => r.id);
}

/** Makes the queue with one request in it (no server runs it), so that `wq status` can later show that nothing else came. */
async function seeded(q: QueueUnderTest): Promise<string> {
  const r = await wq(['enqueue', ...q.flags, '--quiet', '--', 'true']);
  if (r.code !== 0) throw new Error(`wq enqueue failed (${r.code}): ${r.stderr}`);
  return r.stdout.trim();
}

forEachBackend("a command's environment: the server's, with PWD its own directory and no OLDPWD; --env NAME[=VALUE] adds variables", async (t, q) => {
  const dir = realpathSync(t.testdir({ client: {}, server: {} }));
  const clientDir = join(dir, 'client');
  await q.serve([], { PWD: join(dir, 'server'), OLDPWD: '/var', SERVER_ONLY: 'from-server', FOO: undefined });
  const plain = await wq(['enqueue', ...q.flags, '--wait', '--', 'printenv'], { cwd: clientDir, env: { FOO: 'bar' } });
  t.equal(plain.code, 0, plain.stderr);
  const env = parseEnv(plain.stdout);
  t.equal(env.get('PWD'), clientDir, "PWD is the command's working directory (the client's), not the server's");
  t.notOk(env.has('OLDPWD'), "the server's OLDPWD does not leak");
  t.equal(env.get('SERVER_ONLY'), 'from-server', "otherwise the server's environment, as documented");
  t.notOk(env.has('FOO'), "the client's variables are not sent unasked");

  const passed = await wq(['enqueue', ...q.flags, '--wait', '--env', 'FOO', '--env', 'BAZ=qux=1', '--', 'sh', '-c', 'echo "[$FOO][$BAZ]"'], { cwd: clientDir, env: { FOO: 'bar' } });
  t.same(passed, { code: 0, signal: null, stdout: '[bar][qux=1]\n', stderr: '' }, 'NAME alone passes the client value; NAME=VALUE sets one (split at the first =)');

  const pwd = await wq(['enqueue', ...q.flags, '--wait', '--env', 'PWD=/elsewhere', '--', 'printenv', 'PWD'], { cwd: clientDir });
  t.equal(pwd.stdout, `${clientDir}\n`, 'PWD always names the directory the command runs in');
});

forEachBackend("--env-all: the command gets the client's whole environment instead of the server's", async (t, q) => {
  const clientDir = realpathSync(t.testdir());
  await q.serve([], { SERVER_ONLY: 'from-server' });
  const r = await wq(['enqueue', ...q.flags, '--wait', '--env-all', '--env', 'OVERRIDDEN=by-flag', '--', 'printenv'], {
    cwd: clientDir,
    env: { CLIENT_ONLY: 'from-client', OVERRIDDEN: 'by-env' },
  });
  t.equal(r.code, 0, r.stderr);
  const env = parseEnv(r.stdout);
  t.equal(env.get('CLIENT_ONLY'), 'from-client', "the client's variables are there");
  t.notOk(env.has('SERVER_ONLY'), "the server's are not");
  t.equal(env.get('OVERRIDDEN'), 'by-flag', '--env overrides the environment --env-all sends');
  t.equal(env.get('PWD'), clientDir);
});

forEachBackend('--env mistakes are usage errors that enqueue nothing; --accept-env goes with --exec', async (t, q) => {
  const seed = await seeded(q);
  const cases: Array<[string, string[], RegExp]> = [
    ['a NAME that is not set', ['--env', 'WQ_TEST_UNSET'], /WQ_TEST_UNSET is not set here; give its value \(--env WQ_TEST_UNSET=VALUE\)/],
    ['an empty name', ['--env', '=value'], /expected NAME or NAME=VALUE, and the name is empty/],
  ];
  for (const [what, flags, message] of cases) {
    const r = await wq(['enqueue', ...q.flags, ...flags, '--', 'true'], { env: { WQ_TEST_UNSET: undefined } });
    t.equal(r.code, 2, `${what}: exit 2`);
    t.match(r.stderr, message, `${what}: says what is wrong`);
  }
  t.same(await listed(t, q), [seed], 'nothing enqueued');
  // On Redis, plain command mode is refused first unless --allow-shared-commands (as q.serve() passes).
  const serve = await wq(['serve', ...q.flags, ...(q.backend === 'redis' ? ['--allow-shared-commands'] : []), '--accept-env', 'FOO']);
  t.equal(serve.code, 2, '--accept-env without --exec: exit 2');
  t.match(serve.stderr, /--accept-env goes with --exec/);
});

forEachBackend('--exec takes only the variables --accept-env names: a request with others fails without running', async (t, q) => {
  const dir = realpathSync(t.testdir({ 'run.sh': '#!/bin/sh\necho ran >> "$(dirname "$0")/ran.log"\nprintenv "$1"\n' }));
  spawnSync('chmod', ['+x', join(dir, 'run.sh')]);
  await q.serve(['--exec', join(dir, 'run.sh'), '--accept-env', 'FOO']);
  const ran = (): number => (existsSync(join(dir, 'ran.log')) ? readFileSync(join(dir, 'ran.log'), 'utf8').split('\n').length - 1 : 0);

  const accepted = await wq(['enqueue', ...q.flags, '--wait', '--env', 'FOO=x', '--', 'FOO']);
  t.same(accepted, { code: 0, signal: null, stdout: 'x\n', stderr: '' }, 'an accepted variable reaches the command');

  const preload = await wq(['enqueue', ...q.flags, '--wait', '--env', 'FOO=x', '--env', 'LD_PRELOAD=/nonexistent.so', '--', 'FOO']);
  t.equal(preload.code, 1, 'a variable it does not accept fails the request');
  t.match(preload.stderr, /takes only these environment variables from requests: FOO \(wq serve --accept-env\); the request sets LD_PRELOAD, so the command was not run/);

  const all = await wq(['enqueue', ...q.flags, '--wait', '--env-all', '--', 'FOO'], { env: { FOO: 'x' } });
  t.equal(all.code, 1, 'a whole environment is refused');
  t.match(all.stderr, /does not take a whole environment \(--env-all\)/);
  t.equal(ran(), 1, 'the refused requests never ran the command');
});

forEachBackend('a --handler gets --env and --stdin as data, in its context', async (t, q) => {
  const dir = realpathSync(
    t.testdir({
      'handler.mjs':
        'export default (request, { env, replaceEnv, stdin }) => ({ request, env: env ?? null, replaceEnv: replaceEnv ?? null, stdin: stdin === undefined ? null : Buffer.from(stdin).toString() });\n',
    }),
  );
  await q.serve(['--handler', join(dir, 'handler.mjs')]);
  const r = await wq(['enqueue', ...q.flags, '--wait', '--data', '{"a":1}', '--env', 'FOO=1', '--stdin'], { input: 'some input\n' });
  t.equal(r.code, 0, r.stderr);
  t.same(JSON.parse(r.stdout), { request: { a: 1 }, env: { FOO: '1' }, replaceEnv: null, stdin: 'some input\n' });
  const bare = await wq(['enqueue', ...q.flags, '--wait', '--data', '{"a":2}'], { input: 'not sent\n' });
  t.equal(bare.code, 0, bare.stderr);
  t.same(JSON.parse(bare.stdout), { request: { a: 2 }, env: null, replaceEnv: null, stdin: null }, 'nothing unasked');
});

forEachBackend("stdin: the command's is /dev/null unless --stdin, which sends wq's stdin whole, bytes intact", async (t, q) => {
  const dir = realpathSync(t.testdir());
  await q.serve();
  const unasked = await wq(['enqueue', ...q.flags, '--wait', '--', 'sh', '-c', 'cat; readlink /proc/self/fd/0'], { input: 'hello\n' });
  t.same(unasked, { code: 0, signal: null, stdout: '/dev/null\n', stderr: '' }, 'a piped stdin is not read unless asked');

  const piped = await wq(['enqueue', ...q.flags, '--wait', '--stdin', '--', 'cat'], { input: 'hello\n' });
  t.same(piped, { code: 0, signal: null, stdout: 'hello\n', stderr: '' }, 'echo hello | wq enqueue --wait --stdin -- cat prints hello');

  const bytes = Buffer.alloc(300_000);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919) & 0xff;
  writeFileSync(join(dir, 'in.bin'), bytes);
  const copied = await wqWithStdinFrom(join(dir, 'in.bin'), ['enqueue', ...q.flags, '--wait', '--stdin', '--', 'sh', '-c', 'cat > out.bin'], { cwd: dir });
  t.equal(copied.code, 0, copied.stderr);
  t.ok(readFileSync(join(dir, 'out.bin')).equals(bytes), '300 kB of binary stdin arrives byte for byte');

  const ignored = await wq(['enqueue', ...q.flags, '--wait', '--stdin', '--', 'true'], { input: 'x'.repeat(500_000) });
  t.same(ignored, { code: 0, signal: null, stdout: '', stderr: '' }, 'a command that does not read its stdin is no failure');
});

forEachBackend('--stdin past what a request can hold is a usage error that names the limit; nothing is enqueued', async (t, q) => {
  const dir = realpathSync(t.testdir());
  const seed = await seeded(q);
  writeFileSync(join(dir, 'big'), Buffer.alloc(1024 * 1024 + 1));
  const over = await wqWithStdinFrom(join(dir, 'big'), ['enqueue', ...q.flags, '--stdin', '--', 'wc', '-c']);
  t.equal(over.code, 2);
  t.match(over.stderr, /--stdin: standard input is over 1 MiB \(1048576 bytes\), the most a request can carry/);
  writeFileSync(join(dir, 'almost'), Buffer.alloc(1024 * 1024 - 8));
  const together = await wqWithStdinFrom(join(dir, 'almost'), ['enqueue', ...q.flags, '--stdin', '--env', 'A=1', '--', 'wc', '-c']);
  t.equal(together.code, 2, 'stdin and the rest of the request together past the limit');
  t.match(together.stderr, /the request is \d+ bytes encoded \(its command or --data, --env and --stdin together\); a request may be at most 1 MiB/);
  t.same(await listed(t, q), [seed], 'nothing enqueued');
});

forEachBackend('--data @FILE and --data -: a request too long for a command line, read from a file or stdin', async (t, q) => {
  const dir = realpathSync(t.testdir({ 'echo.mjs': 'export default (request) => ({ length: request.text.length, first: request.text.slice(0, 3) });\n' }));
  await q.serve(['--handler', join(dir, 'echo.mjs')]);
  const text = 'abc'.repeat(100_000); // 300 kB: past what one argument may hold (128 KiB)
  writeFileSync(join(dir, 'request.json'), JSON.stringify({ text }));
  const fromFile = await wq(['enqueue', ...q.flags, '--wait', '--data', `@${join(dir, 'request.json')}`]);
  t.equal(fromFile.code, 0, fromFile.stderr);
  t.same(JSON.parse(fromFile.stdout), { length: text.length, first: 'abc' });

  const fromStdin = await wqWithStdinFrom(join(dir, 'request.json'), ['enqueue', ...q.flags, '--wait', '--data', '-']);
  t.equal(fromStdin.code, 0, fromStdin.stderr);
  t.same(JSON.parse(fromStdin.stdout), { length: text.length, first: 'abc' });

  t.same(await listed(t, q), [], 'both claimed');
});

forEachBackend('--data mistakes are usage errors that enqueue nothing', async (t, q) => {
  const dir = realpathSync(t.testdir());
  const seed = await seeded(q);
  const missing = await wq(['enqueue', ...q.flags, '--data', `@${join(dir, 'nope.json')}`]);
  t.equal(missing.code, 2);
  t.match(missing.stderr, /--data @.*nope\.json: cannot read .*nope\.json: ENOENT/);

  writeFileSync(join(dir, 'big.json'), JSON.stringify({ text: 'x'.repeat(1024 * 1024) }));
  const big = await wq(['enqueue', ...q.flags, '--data', `@${join(dir, 'big.json')}`]);
  t.equal(big.code, 2, 'past the request limit: a usage error');
  t.match(big.stderr, /a request may be at most 1 MiB \(1048576 bytes\)/);

  const both = await wq(['enqueue', ...q.flags, '--data', '-', '--stdin'], { input: '{}' });
  t.equal(both.code, 2);
  t.match(both.stderr, /--data - and --stdin both read standard input/);
  t.same(await listed(t, q), [seed], 'the refused ones enqueued nothing');
});

forEachBackend('a read error on standard input is a usage error, never taken for empty input', async (t, q) => {
  const dir = realpathSync(t.testdir({ input: {} }));
  const seed = await seeded(q);
  for (const args of [['--wait', '--stdin', '--', 'sh', '-c', 'wc -c'], ['--data', '-'], ['--data', '@-']]) {
    const r = await wqWithStdinFrom(join(dir, 'input'), ['enqueue', ...q.flags, ...args]);
    t.equal(r.code, 2, args.join(' '));
    t.match(r.stderr, /cannot read standard input: EISDIR/);
    t.match(r.stderr, `wq: ${args[0] === '--data' ? `--data ${args[1]}` : '--stdin'}:`, 'names the flag as given');
  }
  t.same(await listed(t, q), [seed], 'nothing enqueued');
});

forEachBackend('background children: killed when the command exits', async (t, q) => {
  const dir = realpathSync(t.testdir());
  await q.serve();
  const r = await wq(['enqueue', ...q.flags, '--wait', '--', 'sh', '-c', 'sleep 300 > /dev/null 2>&1 & echo $! > bg.pid'], { cwd: dir });
  t.equal(r.code, 0, r.stderr);
  const pid = readPid(join(dir, 'bg.pid'));
  t.ok(pid, 'the command started a background child');
  t.teardown(() => killQuietly(pid!));
  await waitFor(() => isGone(pid!), `the background sleep (pid ${pid}) to be killed once its command exited`);
  t.pass('killed');
});

/**
 * `wq serve` without tap's process tracker, whose hook copies the environment
 * of what the server spawns into a plain object (dropping a `__proto__`
 * variable). Plain command mode on Redis needs --allow-shared-commands, as
 * q.serve() gives it.
 */
async function serveUntracked(t: Test, q: QueueUnderTest, args: string[] = []): Promise<void> {
  const shared = q.backend === 'redis' && !args.includes('--handler') ? ['--allow-shared-commands'] : [];
  const child = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, WQ, 'serve', ...q.flags, ...shared, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.teardown(() => killQuietly(child.pid!));
  const stderr = collect(child.stderr);
  await waitFor(() => stderr.text().includes('server started') || child.exitCode !== null, 'wq serve to start');
  if (child.exitCode !== null) throw new Error(`wq serve exited early (${child.exitCode}): ${stderr.text()}`);
}

forEachBackend('__proto__ is a variable name like any other: --env and --env-all keep it', async (t, q) => {
  const clientDir = realpathSync(t.testdir());
  await serveUntracked(t, q);
  const r = await wq(['enqueue', ...q.flags, '--wait', '--env', '__proto__=VALUE', '--env', 'A=1', '--', 'printenv'], { cwd: clientDir });
  t.equal(r.code, 0, r.stderr);
  const env = parseEnv(r.stdout);
  t.equal(env.get('__proto__'), 'VALUE', '--env __proto__=VALUE');
  t.equal(env.get('A'), '1');
  // env(1) puts the variable in: an environment object in this process cannot carry it past tap's hook.
  const all = spawnSync('env', ['-u', 'NODE_OPTIONS', '__proto__=from-client', process.execPath, WQ, 'enqueue', ...q.flags, '--wait', '--env-all', '--', 'printenv'], { cwd: clientDir, encoding: 'utf8' });
  t.equal(all.status, 0, all.stderr);
  t.equal(parseEnv(all.stdout).get('__proto__'), 'from-client', '--env-all');
});

forEachBackend('__proto__ in a handler context: both names as sent', async (t, q) => {
  const dir = realpathSync(t.testdir({ 'handler.mjs': "export default (request, { env }) => ({ names: Object.keys(env), value: env['__proto__'] });\n" }));
  await serveUntracked(t, q, ['--handler', join(dir, 'handler.mjs')]);
  const h = await wq(['enqueue', ...q.flags, '--wait', '--data', '{}', '--env', '__proto__=VALUE', '--env', '__proto_=other']);
  t.equal(h.code, 0, h.stderr);
  t.same(JSON.parse(h.stdout), { names: ['__proto__', '__proto_'], value: 'VALUE' }, 'a handler gets both names as sent');
});
