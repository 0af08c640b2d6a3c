/**
 * A spool shared by several users. The command-mode guard is tested as any
 * user; the documented multi-user setup (docs/operations.md) needs root, which
 * CI has, to run clients under other uids.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { openSpool } from '../../src/spool/layout.js';
import { WorkQueueClient } from '../../src/client.js';
import { InProcessTaskManager } from '../../src/task-manager/in-process.js';
import { ROOT, startCliServer, startServer, waitFor } from '../fixtures/helpers.js';
import { wq } from '../fixtures/cli.js';
import { assertOtherUsersCanRunWq, isRoot, NEEDS_ROOT, NOBODY, publicTempDir, serveOutcome, wqAs } from '../fixtures/other-users.js';

/** The group and two members of the shared spools below. */
const GROUP = 4242;
const ALICE = { uid: 4301, gid: GROUP };
const BOB = { uid: 4302, gid: GROUP };

t.test('plain command mode refuses a spool other users can write', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  mkdirSync(spool);
  chmodSync(spool, 0o777);
  const refused = await wq(['serve', '--spool', spool]);
  t.equal(refused.code, 3);
  t.match(refused.stderr, /refusing to run commands from a spool other users can write/);
  t.match(refused.stderr, /--allow-shared-commands/);
  t.notOk(existsSync(join(spool, 'server.lock')), 'it never took the spool');
});

t.test('... unless --allow-shared-commands; and --exec / --handler servers are not refused', async (t) => {
  const dir = realpathSync(t.testdir());
  for (const [name, args, argv] of [
    ['allowed', ['--allow-shared-commands'], ['echo', 'ok']],
    ['exec', ['--exec', 'echo'], ['ok']],
  ] as const) {
    const spool = join(dir, name);
    mkdirSync(spool);
    chmodSync(spool, 0o1777);
    const server = await startCliServer(t, spool, [...args]);
    const r = await wq(['enqueue', '--spool', spool, '--wait', '--', ...argv]);
    t.equal(r.code, 0, `${name}: ${r.stderr}`);
    t.equal(r.stdout, 'ok\n');
    server.kill('SIGTERM');
  }
});

t.test('spools wq creates are private to their creator whatever the umask', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'fresh');
  const r = spawnSync('sh', ['-c', `umask 000; exec ${JSON.stringify(process.execPath)} ${JSON.stringify(join(ROOT, 'bin', 'wq'))} enqueue --spool ${JSON.stringify(spool)} --quiet -- true`]);
  t.equal(r.status, 0, r.stderr.toString());
  for (const dir of ['', 'requested', 'pending', 'running', 'complete', 'aborting', 'tmp', 'logs']) {
    const mode = spawnSync('stat', ['-c', '%a', join(spool, dir)]).stdout.toString().trim();
    t.equal(mode, '755', `${dir || 'spool'}/ is 755`);
  }
});

t.test('the documented shared setup: a user cannot remove another user\'s request', { skip: isRoot ? false : 'needs root to act as two users' }, async (t) => {
  // Outside the test tree, which other users may not be able to traverse.
  const spool = mkdtempSync(join(tmpdir(), 'wq-shared-'));
  t.teardown(() => rmSync(spool, { recursive: true, force: true }));
  const group = 4242;
  const alice = 4301;
  const bob = 4302;
  // docs/operations.md: setgid spool, sticky + group-writable requested/ aborting/ tmp/.
  chownSync(spool, 0, group);
  chmodSync(spool, 0o2755);
  for (const dir of ['requested', 'aborting', 'tmp']) {
    mkdirSync(join(spool, dir));
    chownSync(join(spool, dir), 0, group);
    chmodSync(join(spool, dir), 0o3775);
  }
  for (const dir of ['pending', 'running', 'complete', 'logs']) {
    mkdirSync(join(spool, dir));
    chownSync(join(spool, dir), 0, group);
    chmodSync(join(spool, dir), 0o2755);
  }
  openSpool(spool); // the format marker, written once by whoever comes first: root here
  if (!assertOtherUsersCanRunWq(t, alice, group)) return;
  // NODE_OPTIONS cleared: tap's process tracker would try to write its own files as these users.
  const env = { ...process.env, HOME: '/nonexistent', NODE_OPTIONS: '' };
  const asUser = (uid: number, args: string[]) => spawnSync(process.execPath, [join(ROOT, 'bin', 'wq'), ...args], { uid, gid: group, env, encoding: 'utf8' });
  const enqueued = asUser(alice, ['enqueue', '--spool', spool, '--quiet', '--', 'true']);
  t.equal(enqueued.status, 0, enqueued.stderr);
  const id = enqueued.stdout.trim();
  t.ok(existsSync(join(spool, 'requested', id)), "alice's request is queued");
  const remove = spawnSync(process.execPath, ['-e', `require('fs').unlinkSync(${JSON.stringify(join(spool, 'requested', id))})`], { uid: bob, gid: group, env, encoding: 'utf8' });
  t.not(remove.status, 0, 'bob cannot remove it');
  t.match(remove.stderr, /EPERM|EACCES/);
  t.ok(existsSync(join(spool, 'requested', id)), 'it is still there');
  const removeOwn = spawnSync(process.execPath, ['-e', `require('fs').unlinkSync(${JSON.stringify(join(spool, 'requested', id))})`], { uid: alice, gid: group, env, encoding: 'utf8' });
  t.equal(removeOwn.status, 0, 'alice can take her own request back before the server admits it');
  t.strictSame(readdirSync(join(spool, 'requested')), []);
});

t.test("in a shared spool, only a request's owner may abort it (unless --allow-foreign-aborts)", { skip: isRoot ? false : 'needs root to act as two users' }, async (t) => {
  const spool = mkdtempSync(join(tmpdir(), 'wq-shared-'));
  t.teardown(() => rmSync(spool, { recursive: true, force: true }));
  const group = 4242;
  chownSync(spool, 0, group);
  chmodSync(spool, 0o2755);
  openSpool(spool);
  for (const dir of ['requested', 'aborting', 'tmp']) chmodSync(join(spool, dir), 0o3777);
  if (!assertOtherUsersCanRunWq(t, 4301, group)) return;
  const env = { ...process.env, HOME: '/nonexistent', NODE_OPTIONS: '' };
  const asUser = (uid: number, args: string[]) => spawnSync(process.execPath, [join(ROOT, 'bin', 'wq'), ...args], { uid, gid: group, env, encoding: 'utf8' });
  const warnings: string[] = [];
  const logger = { debug() {}, info() {}, error() {}, warn: (message: string) => void warnings.push(message) };
  // Capacity 0: requests stay queued, so each abort meets a pending request.
  startServer(t, new InProcessTaskManager(() => 'ran', { maxTasks: 0 }), { spool, logger, rescanIntervalMs: 20 });
  const client = new WorkQueueClient({ spool });
  t.teardown(() => client.close());
  const id = asUser(4301, ['enqueue', '--spool', spool, '--quiet', '--', 'true']).stdout.trim();
  await waitFor(() => client.state(id) === 'pending', 'admitted');
  // Not spawnSync: `wq abort` waits for this process's server to act on it.
  const refused = await wqAs(BOB, ['abort', '--spool', spool, '--quiet', id]);
  t.equal(refused.code, 1, "bob's abort is refused: exit 1, even with --quiet …");
  t.equal(refused.stderr, `wq: the server refused to abort request ${id}: it was filed by uid 4301, and only its owner, the server's user (uid 0) and root may abort it (unless the server allows anyone to: wq serve --allow-foreign-aborts); it carries on\n`, '… and says so');
  t.ok(warnings.some((w) => w.includes('refused an abort')), 'the server logged the refusal');
  t.equal(client.state(id), 'pending', "alice's request stays queued");
  t.strictSame(readdirSync(join(spool, 'aborting')), [], 'the refused abort is removed');
  const own = await wqAs(ALICE, ['abort', '--spool', spool, id]);
  t.same([own.code, own.stderr], [0, ''], "alice's own abort succeeds quietly …");
  t.equal(client.state(id), undefined, '… and was carried out when wq abort returned');
});

t.test("a refused abort of another user's running request: wq abort exits 1, and the task finishes for its owner", { skip: isRoot ? false : 'needs root to act as two users' }, async (t) => {
  const spool = mkdtempSync(join(tmpdir(), 'wq-shared-'));
  t.teardown(() => rmSync(spool, { recursive: true, force: true }));
  chownSync(spool, 0, GROUP);
  chmodSync(spool, 0o2755);
  openSpool(spool);
  for (const dir of ['requested', 'aborting', 'tmp']) chmodSync(join(spool, dir), 0o3777);
  if (!assertOtherUsersCanRunWq(t, ALICE.uid, GROUP)) return;
  let release = (): void => {};
  const released = new Promise<void>((resolve) => (release = resolve));
  startServer(t, new InProcessTaskManager(async () => (await released, 'finished'), { maxTasks: 1 }), { spool, rescanIntervalMs: 20 });
  const client = new WorkQueueClient({ spool });
  t.teardown(() => client.close());
  const enqueued = await wqAs(ALICE, ['enqueue', '--spool', spool, '--quiet', '--', 'true']);
  const id = enqueued.stdout.trim();
  await waitFor(() => client.state(id) === 'running', 'it to run');
  const refused = await wqAs(BOB, ['abort', '--spool', spool, id]);
  t.equal(refused.code, 1, 'exit 1');
  t.match(refused.stderr, `refused to abort request ${id}`, 'says the abort was refused');
  t.equal(client.state(id), 'running', 'the task is still running');
  release();
  const result = await wqAs(ALICE, ['wait', '--spool', spool, id]);
  t.same([result.code, result.stdout], [0, '"finished"\n'], 'and its owner gets its result');
});

/** A spool made by root and given, with everything in it, to `uid`. */
function spoolOwnedBy(dir: string, uid: number, gid: number): string {
  const spool = join(dir, 'spool');
  const paths = openSpool(spool);
  for (const path of [paths.root, ...Object.values(paths.dirs), paths.formatFile]) chownSync(path, uid, gid);
  return spool;
}

t.test('a root server refuses a spool another user owns (mode 755): it would run their commands as root', { skip: NEEDS_ROOT }, async (t) => {
  const spool = spoolOwnedBy(publicTempDir(t, 'wq-owned-'), NOBODY.uid, NOBODY.gid);
  if (!assertOtherUsersCanRunWq(t, NOBODY.uid, NOBODY.gid)) return;
  for (const mode of [[], ['--exec', 'sh -c']]) {
    const server = await serveOutcome(t, ['--spool', spool, ...mode]);
    if (server.started) {
      const r = await wqAs(NOBODY, ['enqueue', '--spool', spool, '--wait', '--timeout', '20', '--', ...(mode.length > 0 ? ['id -u'] : ['sh', '-c', 'id -u'])]);
      t.fail(`${mode.join(' ') || 'plain command mode'}: the server started, and ran nobody's command as uid ${r.stdout.trim() || '?'}`);
      server.stop();
      continue;
    }
    t.equal(server.code, 3, `${mode.join(' ') || 'plain command mode'}: exit 3`);
    t.match(server.stderr(), /owned by uid 65534/, 'the message names the owner');
    t.notOk(existsSync(join(spool, 'server.lock')), 'it never took the spool');
  }
});

t.test('plain command mode refuses a spool with world-writable logs/, aborting/ or tmp/, or a state directory another user owns', { skip: NEEDS_ROOT }, async (t) => {
  const variants: Record<string, (spool: string) => void> = {
    'logs/ 777': (spool) => chmodSync(join(spool, 'logs'), 0o777),
    'aborting/ 1777': (spool) => chmodSync(join(spool, 'aborting'), 0o1777),
    'tmp/ 1777': (spool) => chmodSync(join(spool, 'tmp'), 0o1777),
    'pending/ owned by nobody': (spool) => chownSync(join(spool, 'pending'), NOBODY.uid, NOBODY.gid),
  };
  for (const [what, make] of Object.entries(variants)) {
    const spool = join(publicTempDir(t, 'wq-open-'), 'spool');
    openSpool(spool);
    make(spool);
    const server = await serveOutcome(t, ['--spool', spool]);
    if (server.started) server.stop();
    t.notOk(server.started, `${what}: refused`);
    t.equal(server.code, 3, `${what}: exit 3`);
    t.match(server.stderr(), /refusing to run commands from a spool other users can write/, `${what}: says why`);
  }
});

t.test("a root command server runs only root's requests: another user's gets a rejected result, even with --allow-shared-commands or --exec", { skip: NEEDS_ROOT }, async (t) => {
  if (!assertOtherUsersCanRunWq(t, NOBODY.uid, NOBODY.gid)) return;
  for (const mode of [['--allow-shared-commands'], ['--exec', 'sh -c']]) {
    // Root's spool, with the directories clients write open to everyone (sticky), as a shared spool has them.
    const spool = join(publicTempDir(t, 'wq-root-'), 'spool');
    const paths = openSpool(spool);
    for (const dir of ['requested', 'aborting', 'tmp'] as const) chmodSync(paths.dirs[dir], 0o1777);
    const server = await serveOutcome(t, ['--spool', spool, ...mode]);
    t.ok(server.started, `${mode[0]}: the server starts: ${server.stderr()}`);
    const argv = (cmd: string): string[] => (mode[0] === '--exec' ? [cmd] : ['sh', '-c', cmd]);
    const theirs = await wqAs(NOBODY, ['enqueue', '--spool', spool, '--wait', '--timeout', '20', '--', ...argv('id -u')]);
    t.not(theirs.code, 0, `${mode[0]}: nobody's request fails`);
    t.match(theirs.stderr, /filed by uid 65534; this server runs only requests filed by uid 0/, `${mode[0]}: and says why`);
    t.equal(theirs.stdout, '', `${mode[0]}: it never ran`);
    const ours = await wq(['enqueue', '--spool', spool, '--wait', '--timeout', '20', '--', ...argv('id -u')]);
    t.equal(ours.stdout, '0\n', `${mode[0]}: root's own request runs`);
    server.stop();
  }
});
