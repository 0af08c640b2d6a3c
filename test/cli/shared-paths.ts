/**
 * The directories on the way to a spool, as `wq serve` judges them: a home
 * made group-writable by a umask of 002 is fine when the group is the user's
 * own; a symlink is judged all along its chain of targets; and a spool that is
 * refused gets nothing written into it, or through it. Real uids, so root.
 */
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { privateGroups } from '../../src/private-groups.js';
import { ROOT } from '../fixtures/helpers.js';
import { assertOtherUsersCanRunWq, NEEDS_ROOT, OTHER_USER_ENV, publicTempDir, serveOutcome, wqAs } from '../fixtures/other-users.js';

/** Debian's `daemon` (1:1): a system user whose primary group has no other member, like a user's private group. */
const DAEMON = { uid: 1, gid: 1 };
/** `nobody`, whose group nogroup (65534) other system users (`_apt`, `sync`) have as primary group too. */
const NOBODY = { uid: 65534, gid: 65534 };
const MEMBER_UID = 4301;

/** A home laid out as umask 002 leaves it: ~, ~/.local and ~/.local/state mode 775, owned by `user` and group `gid`. */
function umask002Home(t: Parameters<typeof publicTempDir>[0], user: { uid: number }, gid: number): { home: string; env: NodeJS.ProcessEnv } {
  const home = join(publicTempDir(t, 'wq-home-'), 'home');
  for (const dir of [home, join(home, '.local'), join(home, '.local', 'state')]) {
    mkdirSync(dir);
    chownSync(dir, user.uid, gid);
    chmodSync(dir, 0o775);
  }
  const env: NodeJS.ProcessEnv = { ...OTHER_USER_ENV, HOME: home };
  delete env.WQ_SPOOL;
  delete env.XDG_STATE_HOME;
  return { home, env };
}

t.test('umask 002: the default spool under a home writable by the user\'s own private group is served', { skip: NEEDS_ROOT }, async (t) => {
  const premise = privateGroups(DAEMON.uid, readFileSync('/etc/passwd', 'utf8'), readFileSync('/etc/group', 'utf8'));
  if (!t.strictSame(premise, [DAEMON.gid], 'this system gives daemon (uid 1) a group of its own (the test needs one)')) return;
  if (!assertOtherUsersCanRunWq(t, DAEMON.uid, DAEMON.gid)) return;
  const { home, env } = umask002Home(t, DAEMON, DAEMON.gid);
  const server = await serveOutcome(t, ['--exec', 'echo'], DAEMON, env);
  t.ok(server.started, `wq serve on the default spool starts: ${server.stderr()}`);
  if (!server.started) return;
  const r = await wqAs(DAEMON, ['enqueue', '--wait', '--timeout', '20', '--', 'served'], env);
  t.equal(r.stdout, 'served\n', `the request is served: ${r.stderr}`);
  t.ok(readdirSync(join(home, '.local', 'state', 'wq', 'spool')).includes('complete'), 'in ~/.local/state/wq/spool');
  server.stop();
});

t.test('umask 002: a home writable by a group others share is refused, with the directory, the bit and the chmod to run', { skip: NEEDS_ROOT }, async (t) => {
  if (!assertOtherUsersCanRunWq(t, NOBODY.uid, NOBODY.gid)) return;
  const { home, env } = umask002Home(t, NOBODY, NOBODY.gid);
  const server = await serveOutcome(t, ['--exec', 'echo'], NOBODY, env);
  if (server.started) server.stop();
  t.equal(server.code, 3, 'exit 3');
  t.match(server.stderr(), `${home} is writable by other users and has no sticky bit`, 'names the directory');
  t.match(server.stderr(), 'its group, gid 65534, which has members other than the server\'s user', 'says which bit: the group\'s, and why it matters');
  t.match(server.stderr(), `to fix: chmod g-w ${home}`, 'gives the chmod to run');
});

t.test('a symlink whose target goes through another symlink in a directory another user owns is refused', { skip: NEEDS_ROOT }, async (t) => {
  const ch = publicTempDir(t, 'wq-chain-');
  for (const d of ['a', 'b', 'd', 'd/c']) mkdirSync(join(ch, d));
  chownSync(join(ch, 'b'), MEMBER_UID, MEMBER_UID); // uid 4301 could retarget b/link2
  symlinkSync(join(ch, 'd'), join(ch, 'b', 'link2'));
  symlinkSync(join(ch, 'b', 'link2', 'c'), join(ch, 'a', 'link'));
  const spool = join(ch, 'a', 'link', 'spool');
  const server = await serveOutcome(t, ['--spool', spool, '--exec', 'echo']);
  if (server.started) server.stop();
  t.equal(server.code, 3, `a root --exec server refuses it: ${server.stderr()}`);
  t.match(server.stderr(), `${join(ch, 'b')} is owned by uid ${MEMBER_UID}, who could rename ${join(ch, 'b', 'link2')}`, 'names the link in the middle of the chain');
});

t.test('a refused spool gets nothing written: not through a symlink out of a directory another user owns, in any mode', { skip: NEEDS_ROOT }, async (t) => {
  for (const mode of [['--exec', 'echo'], ['--handler', join(ROOT, 'examples', 'copy-payload.js')], []]) {
    const dir = publicTempDir(t, 'wq-att-');
    const att = join(dir, 'att');
    const victim = join(dir, 'victim');
    mkdirSync(att);
    mkdirSync(victim);
    chownSync(att, MEMBER_UID, MEMBER_UID);
    symlinkSync(victim, join(att, 'spool'));
    const server = await serveOutcome(t, ['--spool', join(att, 'spool'), ...mode]);
    if (server.started) server.stop();
    const name = mode[0] ?? 'plain command mode';
    t.equal(server.code, 3, `${name}: refused (exit 3): ${server.stderr()}`);
    t.match(server.stderr(), `${att} is owned by uid ${MEMBER_UID}`, `${name}: says who could redirect it`);
    t.strictSame(readdirSync(victim), [], `${name}: nothing was created where the symlink leads`);
  }
});
