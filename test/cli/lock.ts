/**
 * The server lock, black-box: a server's lock dies with it however it dies (a
 * SIGKILLed pid 1 of a pid namespace, as in a container), a lock file naming a
 * live but unrelated pid does not keep `wq serve` out, readers in another pid
 * namespace still see a live server, and a missing flock(1) is named.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { openSpool } from '../../src/spool/layout.js';
import { currentBootId, processStartTicks } from '../../src/spool/lock.js';
import { WQ, waitFor } from '../fixtures/helpers.js';
import { captureStderr, exited, startServeWith, wq } from '../fixtures/cli.js';

/** Runs `argv` as pid 1 of a new pid namespace with its own /proc, as a container runtime does. */
function inPidNamespace(argv: string[]) {
  return spawn('unshare', ['--pid', '--fork', '--mount-proc', ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
}

/** The pid (as this namespace sees it) of the one child of `pid`: the namespace's pid 1 that unshare forked. */
function onlyChild(pid: number): number | undefined {
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(' ').filter(Boolean);
  return children.length === 1 ? Number(children[0]) : undefined;
}

async function runs(t: Test, spool: string, what: string): Promise<void> {
  const r = await wq(['enqueue', '--spool', spool, '--wait', '--', 'echo', what]);
  t.equal(r.code, 0, `${what}: ${r.stderr}`);
  t.equal(r.stdout, `${what}\n`);
}

t.test('wq serve run as pid 1 of a pid namespace, killed with -9, can be started again', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  const ns = inPidNamespace([process.execPath, WQ, 'serve', '--spool', spool]);
  const stderr = captureStderr(ns);
  t.teardown(() => {
    ns.kill('SIGKILL');
  });
  await waitFor(() => stderr.text().includes('server started') || ns.exitCode !== null, 'the server in the namespace to start', 30_000);
  t.equal(JSON.parse(readFileSync(join(spool, 'server.lock'), 'utf8')).pid, 1, 'it recorded itself as pid 1');
  await runs(t, spool, 'before');
  const serverPid = (await waitFor(() => onlyChild(ns.pid!), 'the namespace\'s pid 1 to be found'))!;
  process.kill(serverPid, 'SIGKILL');
  await exited(ns);

  const status = await wq(['status', '--spool', spool]);
  t.match(status.stdout, /server: {2}none running/, 'status: the server is gone, though pid 1 lives here');
  const again = await startServeWith(t, ['--spool', spool]);
  t.match(again.stderr(), /server started/, 'not "already serving (pid 1)"');
  await runs(t, spool, 'after');
});

/** A crashed server's lock whose pid now belongs to another process, split around the pid. */
function lockAround(): [string, string] {
  const text = JSON.stringify({ pid: 999_999, host: hostname(), bootId: currentBootId(), startedAt: 1 });
  return text.split('999999') as [string, string];
}

t.test('a lock naming a live process that is no server (pid 1) does not keep wq serve out', async (t) => {
  const spool = openSpool(join(realpathSync(t.testdir()), 'spool')).root;
  const [before, after] = lockAround();
  writeFileSync(join(spool, 'server.lock'), `${before}1${after.replace('}', `,"startTicks":${processStartTicks(1)}}`)}`);
  const status = await wq(['status', '--spool', spool]);
  t.match(status.stdout, /server: {2}none running/, 'status does not take pid 1 for a server');
  const { stderr } = await startServeWith(t, ['--spool', spool]);
  t.match(stderr(), /server started/);
  await runs(t, spool, 'past pid 1');
});

t.test('a lock naming the starting wq serve\'s own pid does not keep it out', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  mkdirSync(spool);
  // The shell writes its own pid into the lock, then becomes wq serve (exec keeps the pid).
  const script = 'printf \'%s%s%s\' "$2" $$ "$3" > server.lock && exec "$0" "$1" serve --spool .';
  const own = spawn('sh', ['-c', script, process.execPath, WQ, ...lockAround()], { cwd: spool, stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr = captureStderr(own);
  t.teardown(() => {
    own.kill('SIGKILL');
  });
  await waitFor(() => stderr.text().includes('server started') || own.exitCode !== null, 'wq serve to start', 30_000);
  t.match(stderr.text(), /server started/, 'not "already serving" itself');
  t.equal(JSON.parse(readFileSync(join(spool, 'server.lock'), 'utf8')).pid, own.pid, 'it holds the lock, under the pid the old lock named');
  await runs(t, spool, 'past its own pid');
});

t.test('wq status in a pid namespace sees the server that serves there', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  // Gives up after 600 polls (30 s) rather than hang the test.
  const script = `"$0" "$1" serve --spool "$2" 2>"$2.err" & n=0; until grep -q 'server started' "$2.err" 2>/dev/null; do n=$((n+1)); [ $n -lt 600 ] || exit 9; sleep 0.05; done; "$0" "$1" status --spool "$2"; kill $!`;
  const ns = inPidNamespace(['sh', '-c', script, process.execPath, WQ, spool]);
  let stdout = '';
  ns.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  const stderr = captureStderr(ns);
  t.teardown(() => {
    ns.kill('SIGKILL');
  });
  const ended = await exited(ns);
  t.equal(ended.code, 0, stderr.text());
  t.match(stdout, /server: {2}pid \d+ on /, 'a live server, though /proc/locks there does not list its lock');
});

t.test('wq serve without flock(1) says what is missing', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  const empty = join(realpathSync(t.testdir()), 'empty-bin');
  mkdirSync(empty);
  const r = await wq(['serve', '--spool', spool], { env: { PATH: empty } });
  t.equal(r.code, 3);
  t.match(r.stderr, /flock\(1\).*util-linux/);
});
