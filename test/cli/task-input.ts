/**
 * What a task gets besides its argv, black-box: its environment (`--env`,
 * `--env-all`, `wq serve --accept-env`), its standard input (`--stdin`; else
 * /dev/null), a request read from a file or stdin (`--data @FILE`, `--data -`),
 * and what happens to the background children it leaves. The real bin/wq
 * against a real `wq serve` on a temp spool.
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { spoolContents, startCliServer, waitFor, WQ } from '../fixtures/helpers.js';
import { startServeWith, wq } from '../fixtures/cli.js';
import { closed, collect, sq } from '../fixtures/gates.js';
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

/** A served spool whose server runs in its own directory, with OLDPWD and a variable of its own, as a login shell would leave them. */
async function servedFrom(t: Test, args: string[] = []) {
  const dir = realpathSync(t.testdir({ server: {}, client: {} }));
  const spool = join(dir, 'spool');
  const serverDir = join(dir, 'server');
  await startServeWith(t, ['--spool', spool, ...args], { cwd: serverDir, env: { PWD: serverDir, OLDPWD: '/var', SERVER_ONLY: 'from-server', FOO: undefined } });
  return { dir, spool, clientDir: join(dir, 'client') };
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

t.test("a command's environment: the server's, with PWD its own directory and no OLDPWD; --env NAME[=VALUE] adds variables", async (t) => {
  const { spool, clientDir } = await servedFrom(t);
  const plain = await wq(['enqueue', '--spool', spool, '--wait', '--', 'printenv'], { cwd: clientDir, env: { FOO: 'bar' } });
  t.equal(plain.code, 0, plain.stderr);
  const env = parseEnv(plain.stdout);
  t.equal(env.get('PWD'), clientDir, "PWD is the command's working directory (the client's), not the server's");
  t.notOk(env.has('OLDPWD'), "the server's OLDPWD does not leak");
  t.equal(env.get('SERVER_ONLY'), 'from-server', "otherwise the server's environment, as documented");
  t.notOk(env.has('FOO'), "the client's variables are not sent unasked: FOO=bar wq enqueue -- sh -c 'echo [$FOO]' prints []");

  const passed = await wq(['enqueue', '--spool', spool, '--wait', '--env', 'FOO', '--env', 'BAZ=qux=1', '--', 'sh', '-c', 'echo "[$FOO][$BAZ]"'], { cwd: clientDir, env: { FOO: 'bar' } });
  t.same(passed, { code: 0, signal: null, stdout: '[bar][qux=1]\n', stderr: '' }, 'NAME alone passes the client value; NAME=VALUE sets one (split at the first =)');

  const pwd = await wq(['enqueue', '--spool', spool, '--wait', '--env', 'PWD=/elsewhere', '--', 'printenv', 'PWD'], { cwd: clientDir });
  t.equal(pwd.stdout, `${clientDir}\n`, 'PWD always names the directory the command runs in');
});

t.test("--env-all: the command gets the client's whole environment instead of the server's", async (t) => {
  const { spool, clientDir } = await servedFrom(t);
  const r = await wq(['enqueue', '--spool', spool, '--wait', '--env-all', '--env', 'OVERRIDDEN=by-flag', '--', 'printenv'], {
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

t.test('--env mistakes are usage errors that enqueue nothing', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const cases: Array<[string, string[], RegExp]> = [
    ['a NAME that is not set', ['--env', 'WQ_TEST_UNSET'], /WQ_TEST_UNSET is not set here; give its value \(--env WQ_TEST_UNSET=VALUE\)/],
    ['an empty name', ['--env', '=value'], /expected NAME or NAME=VALUE, and the name is empty/],
  ];
  for (const [what, flags, message] of cases) {
    const r = await wq(['enqueue', '--spool', spool, ...flags, '--', 'true'], { env: { WQ_TEST_UNSET: undefined } });
    t.equal(r.code, 2, `${what}: exit 2`);
    t.match(r.stderr, message, `${what}: says what is wrong`);
  }
  t.notOk(existsSync(join(spool, 'requested')) && readdirSync(join(spool, 'requested')).length > 0, 'nothing enqueued');
  const serve = await wq(['serve', '--spool', spool, '--accept-env', 'FOO']);
  t.equal(serve.code, 2, '--accept-env without --exec: exit 2');
  t.match(serve.stderr, /--accept-env goes with --exec/);
});

t.test('a request file that carries an environment or stdin is not readable by others (0640); one without stays 0644', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const modes: Record<string, number> = {};
  for (const [what, flags] of [['env', ['--env', 'TOKEN=secret']], ['env, durable', ['--durable', '--env', 'TOKEN=secret']], ['stdin', ['--stdin']], ['neither', []]] as const) {
    const r = await wq(['enqueue', '--spool', spool, '-q', ...flags, '--', 'true'], { input: 'in', env: { WQ_TEST: '1' } });
    t.equal(r.code, 0, r.stderr);
    modes[what] = statSync(join(spool, 'requested', r.stdout.trim())).mode & 0o777;
  }
  // What the umask takes away, from a file created 0666 here.
  writeFileSync(join(dir, 'probe'), '', { mode: 0o666 });
  const umask = ~statSync(join(dir, 'probe')).mode & 0o666;
  t.same(modes, { env: 0o640 & ~umask, 'env, durable': 0o640 & ~umask, stdin: 0o640 & ~umask, neither: 0o644 & ~umask });
});

t.test('--exec takes only the variables --accept-env names: a request with others fails without running', async (t) => {
  const dir = realpathSync(t.testdir({ 'run.sh': '#!/bin/sh\necho ran >> "$(dirname "$0")/ran.log"\nprintenv "$1"\n' }));
  spawnSync('chmod', ['+x', join(dir, 'run.sh')]);
  const spool = join(dir, 'spool');
  await startCliServer(t, spool, ['--exec', join(dir, 'run.sh'), '--accept-env', 'FOO']);
  const ran = (): number => (existsSync(join(dir, 'ran.log')) ? readFileSync(join(dir, 'ran.log'), 'utf8').split('\n').length - 1 : 0);

  const accepted = await wq(['enqueue', '--spool', spool, '--wait', '--env', 'FOO=x', '--', 'FOO']);
  t.same(accepted, { code: 0, signal: null, stdout: 'x\n', stderr: '' }, 'an accepted variable reaches the command');

  const preload = await wq(['enqueue', '--spool', spool, '--wait', '--env', 'FOO=x', '--env', 'LD_PRELOAD=/nonexistent.so', '--', 'FOO']);
  t.equal(preload.code, 1, 'a variable it does not accept fails the request');
  t.match(preload.stderr, /takes only these environment variables from requests: FOO \(wq serve --accept-env\); the request sets LD_PRELOAD, so the command was not run/);

  const all = await wq(['enqueue', '--spool', spool, '--wait', '--env-all', '--', 'FOO'], { env: { FOO: 'x' } });
  t.equal(all.code, 1, 'a whole environment is refused');
  t.match(all.stderr, /does not take a whole environment \(--env-all\)/);
  t.equal(ran(), 1, 'the refused requests never ran the command');
});

t.test('a --handler gets --env and --stdin as data, in its context', async (t) => {
  const dir = realpathSync(
    t.testdir({
      'handler.mjs':
        'export default (request, { env, replaceEnv, stdin }) => ({ request, env: env ?? null, replaceEnv: replaceEnv ?? null, stdin: stdin === undefined ? null : Buffer.from(stdin).toString() });\n',
    }),
  );
  const spool = join(dir, 'spool');
  await startCliServer(t, spool, ['--handler', join(dir, 'handler.mjs')]);
  const r = await wq(['enqueue', '--spool', spool, '--wait', '--data', '{"a":1}', '--env', 'FOO=1', '--stdin'], { input: 'some input\n' });
  t.equal(r.code, 0, r.stderr);
  t.same(JSON.parse(r.stdout), { request: { a: 1 }, env: { FOO: '1' }, replaceEnv: null, stdin: 'some input\n' });
  const bare = await wq(['enqueue', '--spool', spool, '--wait', '--data', '{"a":2}'], { input: 'not sent\n' });
  t.same(JSON.parse(bare.stdout), { request: { a: 2 }, env: null, replaceEnv: null, stdin: null }, 'nothing unasked');
});

t.test("stdin: the command's is /dev/null unless --stdin, which sends wq's stdin whole, bytes intact", async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  await startCliServer(t, spool);
  const unasked = await wq(['enqueue', '--spool', spool, '--wait', '--', 'sh', '-c', 'cat; readlink /proc/self/fd/0'], { input: 'hello\n' });
  t.same(unasked, { code: 0, signal: null, stdout: '/dev/null\n', stderr: '' }, 'a piped stdin is not read unless asked');

  const piped = await wq(['enqueue', '--spool', spool, '--wait', '--stdin', '--', 'cat'], { input: 'hello\n' });
  t.same(piped, { code: 0, signal: null, stdout: 'hello\n', stderr: '' }, 'echo hello | wq enqueue --wait --stdin -- cat prints hello');

  const bytes = Buffer.alloc(300_000);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919) & 0xff;
  writeFileSync(join(dir, 'in.bin'), bytes);
  const copied = await wqWithStdinFrom(join(dir, 'in.bin'), ['enqueue', '--spool', spool, '--wait', '--stdin', '--', 'sh', '-c', 'cat > out.bin'], { cwd: dir });
  t.equal(copied.code, 0, copied.stderr);
  t.ok(readFileSync(join(dir, 'out.bin')).equals(bytes), '300 kB of binary stdin arrives byte for byte');

  const ignored = await wq(['enqueue', '--spool', spool, '--wait', '--stdin', '--', 'true'], { input: 'x'.repeat(500_000) });
  t.same(ignored, { code: 0, signal: null, stdout: '', stderr: '' }, 'a command that does not read its stdin is no failure');
});

t.test('--stdin past what a request can hold is a usage error that names the limit; nothing is enqueued', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  writeFileSync(join(dir, 'big'), Buffer.alloc(1024 * 1024 + 1));
  const over = await wqWithStdinFrom(join(dir, 'big'), ['enqueue', '--spool', spool, '--stdin', '--', 'wc', '-c']);
  t.equal(over.code, 2);
  t.match(over.stderr, /--stdin: standard input is over 1 MiB \(1048576 bytes\), the most a request can carry/);
  writeFileSync(join(dir, 'almost'), Buffer.alloc(1024 * 1024 - 8));
  const together = await wqWithStdinFrom(join(dir, 'almost'), ['enqueue', '--spool', spool, '--stdin', '--env', 'A=1', '--', 'wc', '-c']);
  t.equal(together.code, 2, 'stdin and the rest of the request together past the limit');
  t.match(together.stderr, /the request is \d+ bytes encoded \(its command or --data, --env and --stdin together\); a request may be at most 1 MiB/);
  t.same(spoolContents(spool).requested, [], 'nothing enqueued');
});

const hasScript = spawnSync('script', ['--version'], { encoding: 'utf8' });
const scriptMissing = hasScript.status === 0 && /util-linux/.test(hasScript.stdout + hasScript.stderr) ? undefined : 'util-linux `script` is not installed: cannot make a pseudo-terminal';

t.test('--stdin on a terminal is refused at once rather than waiting for input', { skip: scriptMissing }, async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const line = [process.execPath, WQ, 'enqueue', '--spool', spool, '--stdin', '--', 'cat'].map(sq).join(' ');
  const child = spawn('script', ['-q', '-e', '-c', line, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.teardown(() => killQuietly(child.pid!));
  const terminal = collect(child.stdout);
  const ending = closed(child);
  await waitFor(() => child.exitCode !== null || child.signalCode !== null, 'wq --stdin on a terminal to give up at once', 20_000);
  const end = await ending;
  t.equal(end.code, 2, terminal.text());
  t.match(terminal.text(), /--stdin reads standard input to its end, and it is a terminal/);
  t.same(spoolContents(spool).requested, []);
});

t.test('--data @FILE and --data -: a request too long for a command line, read from a file or stdin', async (t) => {
  const dir = realpathSync(t.testdir({ 'echo.mjs': 'export default (request) => ({ length: request.text.length, first: request.text.slice(0, 3) });\n' }));
  const spool = join(dir, 'spool');
  await startCliServer(t, spool, ['--handler', join(dir, 'echo.mjs')]);
  const text = 'abc'.repeat(100_000); // 300 kB: past what one argument may hold (128 KiB)
  writeFileSync(join(dir, 'request.json'), JSON.stringify({ text }));
  const fromFile = await wq(['enqueue', '--spool', spool, '--wait', '--data', `@${join(dir, 'request.json')}`]);
  t.equal(fromFile.code, 0, fromFile.stderr);
  t.same(JSON.parse(fromFile.stdout), { length: text.length, first: 'abc' });

  const fromStdin = await wqWithStdinFrom(join(dir, 'request.json'), ['enqueue', '--spool', spool, '--wait', '--data', '-']);
  t.equal(fromStdin.code, 0, fromStdin.stderr);
  t.same(JSON.parse(fromStdin.stdout), { length: text.length, first: 'abc' });

  const missing = await wq(['enqueue', '--spool', spool, '--data', `@${join(dir, 'nope.json')}`]);
  t.equal(missing.code, 2);
  t.match(missing.stderr, /--data @.*nope\.json: cannot read .*nope\.json: ENOENT/);

  writeFileSync(join(dir, 'big.json'), JSON.stringify({ text: 'x'.repeat(1024 * 1024) }));
  const big = await wq(['enqueue', '--spool', spool, '--data', `@${join(dir, 'big.json')}`]);
  t.equal(big.code, 2, 'past the request limit: a usage error');
  t.match(big.stderr, /a request may be at most 1 MiB \(1048576 bytes\)/);

  const both = await wq(['enqueue', '--spool', spool, '--data', '-', '--stdin'], { input: '{}' });
  t.equal(both.code, 2);
  t.match(both.stderr, /--data - and --stdin both read standard input/);
  t.same(spoolContents(spool).requested, [], 'the refused ones enqueued nothing');
});

t.test("background children: --help says they are killed when the command exits, and how to keep them; and they are", async (t) => {
  const enqueueHelp = await wq(['enqueue', '--help']);
  t.match(enqueueHelp.stdout.replace(/\s+/g, ' '), /When the command exits, whatever it left running in the background \(its process group\) is killed with SIGKILL/);
  t.match(enqueueHelp.stdout.replace(/\s+/g, ' '), /wait for background jobs in the command/);
  t.match(enqueueHelp.stdout.replace(/\s+/g, ' '), /\/dev\/null as its stdin unless --stdin/, 'the stdin default is in --help too');
  const serveHelp = await wq(['serve', '--help']);
  t.match(serveHelp.stdout.replace(/\s+/g, ' '), /When a command exits, whatever it left running in its process group is killed \(SIGKILL\)/);

  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  await startCliServer(t, spool);
  const r = await wq(['enqueue', '--spool', spool, '--wait', '--', 'sh', '-c', 'sleep 300 > /dev/null 2>&1 & echo $! > bg.pid'], { cwd: dir });
  t.equal(r.code, 0, r.stderr);
  const pid = readPid(join(dir, 'bg.pid'));
  t.ok(pid, 'the command started a background child');
  t.teardown(() => killQuietly(pid!));
  await waitFor(() => isGone(pid!), `the background sleep (pid ${pid}) to be killed once its command exited`);
});

/** `wq serve` without tap's process tracker, whose hook copies the environment of what the server spawns into a plain object (dropping a `__proto__` variable). */
async function serveUntracked(t: Test, spool: string, args: string[] = []): Promise<void> {
  const child = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, WQ, 'serve', '--spool', spool, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.teardown(() => killQuietly(child.pid!));
  const stderr = collect(child.stderr);
  await waitFor(() => stderr.text().includes('server started') || child.exitCode !== null, 'wq serve to start');
}

t.test('__proto__ is a variable name like any other: --env, --env-all and a handler context keep it', async (t) => {
  const clientDir = realpathSync(t.testdir());
  const spool = join(clientDir, 'spool');
  await serveUntracked(t, spool);
  const r = await wq(['enqueue', '--spool', spool, '--wait', '--env', '__proto__=VALUE', '--env', 'A=1', '--', 'printenv'], { cwd: clientDir });
  t.equal(r.code, 0, r.stderr);
  const env = parseEnv(r.stdout);
  t.equal(env.get('__proto__'), 'VALUE', '--env __proto__=VALUE');
  t.equal(env.get('A'), '1');
  // env(1) puts the variable in: an environment object in this process cannot carry it past tap's hook.
  const all = spawnSync('env', ['-u', 'NODE_OPTIONS', '__proto__=from-client', process.execPath, WQ, 'enqueue', '--spool', spool, '--wait', '--env-all', '--', 'printenv'], { cwd: clientDir, encoding: 'utf8' });
  t.equal(all.status, 0, all.stderr);
  t.equal(parseEnv(all.stdout).get('__proto__'), 'from-client', '--env-all');

  const dir = realpathSync(t.testdir({ 'handler.mjs': "export default (request, { env }) => ({ names: Object.keys(env), value: env['__proto__'] });\n" }));
  const handled = join(dir, 'spool');
  await serveUntracked(t, handled, ['--handler', join(dir, 'handler.mjs')]);
  const h = await wq(['enqueue', '--spool', handled, '--wait', '--data', '{}', '--env', '__proto__=VALUE', '--env', '__proto_=other']);
  t.equal(h.code, 0, h.stderr);
  t.same(JSON.parse(h.stdout), { names: ['__proto__', '__proto_'], value: 'VALUE' }, 'a handler gets both names as sent');
});

t.test('a read error on standard input is a usage error, never taken for empty input', async (t) => {
  const dir = realpathSync(t.testdir({ input: {} }));
  const spool = join(dir, 'spool');
  for (const args of [['--wait', '--stdin', '--', 'sh', '-c', 'wc -c'], ['--data', '-'], ['--data', '@-']]) {
    const r = await wqWithStdinFrom(join(dir, 'input'), ['enqueue', '--spool', spool, ...args]);
    t.equal(r.code, 2, args.join(' '));
    t.match(r.stderr, /cannot read standard input: EISDIR/);
    t.match(r.stderr, `wq: ${args[0] === '--data' ? `--data ${args[1]}` : '--stdin'}:`, 'names the flag as given');
  }
  t.same(existsSync(spool) ? spoolContents(spool).requested : [], [], 'nothing enqueued');
});
