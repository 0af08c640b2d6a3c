import t from 'tap';
import { foreignWritable, mayAbort, mayRunRequest, redirectableBy, redirections } from '../../src/spool/permissions.js';

t.test('foreignWritable: group- or world-writable directories, or ones another user owns, whoever serves', async (t) => {
  const dirs = [
    { path: 'private', mode: 0o40755, uid: 1000 },
    { path: 'group-writable', mode: 0o42775, uid: 1000 },
    { path: 'world-writable', mode: 0o41777, uid: 1000 },
    { path: 'someone-elses', mode: 0o40755, uid: 2000 },
    { path: 'roots', mode: 0o40755, uid: 0 },
  ];
  t.strictSame(foreignWritable(dirs, 1000), ['group-writable is writable by its group', 'world-writable is writable by everyone', 'someone-elses is owned by uid 2000']);
  t.strictSame(foreignWritable([dirs[0]!, dirs[4]!], 1000), [], "the server's own and root's private directories are fine");
  t.strictSame(foreignWritable([dirs[3]!], 0), ['someone-elses is owned by uid 2000'], 'a root server serving a directory another user owns is flagged: its owner could write it');
});

t.test('redirectableBy: who could rename an entry, from the owner and mode of its directory and the entry', async (t) => {
  const dir = (mode: number, uid: number, path = 'spool') => ({ path, mode, uid });
  const complete = (uid: number) => ({ path: 'complete/', mode: 0o2755, uid });
  t.equal(redirectableBy(dir(0o755, 1000), complete(1000), 1000), undefined, 'private, owned by the server: no one else');
  t.equal(redirectableBy(dir(0o2755, 0), complete(1000), 1000), undefined, "root's directory, writable by root only");
  t.match(redirectableBy(dir(0o755, 2000), complete(1000), 1000), /spool is owned by uid 2000, who could rename complete\//, 'its owner can rename anything in it');
  t.match(redirectableBy(dir(0o755, 2000), complete(0), 0), /owned by uid 2000/, 'even when root serves');
  t.match(redirectableBy(dir(0o2775, 1000), complete(1000), 1000), /writable by other users and has no sticky bit/, 'the old documented shared layout: any member could swap complete/');
  t.match(redirectableBy(dir(0o777, 0), complete(0), 0), /no sticky bit/);
  t.equal(redirectableBy(dir(0o3775, 1000), complete(1000), 1000), undefined, 'sticky and shared: only the owner of an entry may rename it');
  t.equal(redirectableBy(dir(0o1777, 0, '/tmp'), complete(1000), 1000), undefined, '/tmp: sticky, and the entry is ours');
  t.match(redirectableBy(dir(0o3775, 1000), complete(2000), 1000), /complete\/ is owned by uid 2000 in the shared directory spool/, 'sticky, but a member owns the entry');
});

t.test('redirections: every reason over a chain of pairs', async (t) => {
  const root = { path: '/', mode: 0o755, uid: 0 };
  const tmp = { path: '/tmp', mode: 0o1777, uid: 0 };
  const mine = { path: '/tmp/mine', mode: 0o755, uid: 1000 };
  const theirs = { path: '/tmp/theirs', mode: 0o755, uid: 2000 };
  t.strictSame(redirections([[root, tmp], [tmp, mine]], 1000), []);
  t.strictSame(redirections([[root, tmp], [tmp, theirs]], 1000), ['/tmp/theirs is owned by uid 2000 in the shared directory /tmp, so its owner could rename it']);
});

t.test('mayRunRequest: anyone without a list, else only the listed owners', async (t) => {
  t.ok(mayRunRequest(2000, undefined));
  t.ok(mayRunRequest(0, [0]));
  t.notOk(mayRunRequest(65534, [0]), 'a root command server refuses another user');
  t.ok(mayRunRequest(1000, [1000, 0]));
  t.notOk(mayRunRequest(2000, [1000, 0]));
});

t.test('mayAbort: the owner, the server user and root may; others only under the anyone policy', async (t) => {
  t.ok(mayAbort(1000, 1000, 500, 'owner'), 'owner');
  t.ok(mayAbort(500, 1000, 500, 'owner'), 'server user');
  t.ok(mayAbort(0, 1000, 500, 'owner'), 'root');
  t.notOk(mayAbort(2000, 1000, 500, 'owner'), 'another user');
  t.ok(mayAbort(2000, 1000, 500, 'anyone'), 'another user, anyone policy');
  t.ok(mayAbort(2000, undefined, 500, 'owner'), 'unknown owner (request not seen yet): decided when it appears');
});

t.test('a group-writable directory is private when its group is: redirectableBy and foreignWritable take the private groups', async (t) => {
  const home = { path: '/home/alice/.local', mode: 0o775, uid: 1000, gid: 1000 };
  const state = { path: '/home/alice/.local/state', mode: 0o775, uid: 1000, gid: 1000 };
  t.equal(redirectableBy(home, state, 1000, [1000]), undefined, "umask 002 with the user's own group: no one else may write");
  t.match(redirectableBy(home, state, 1000, []), /writable by its group, gid 1000, which has members other than the server's user; to fix: chmod g-w \/home\/alice\/\.local\)/, 'a shared group: says which bit and the chmod');
  t.match(redirectableBy({ ...home, mode: 0o777 }, state, 1000, [1000]), /writable by everyone; to fix: chmod o-w \/home\/alice\/\.local\)/, 'the other write bit is never private');
  t.match(redirectableBy({ ...home, mode: 0o777, gid: 100 }, state, 1000, [1000]), /to fix: chmod go-w/, 'both bits: both to take away');
  t.match(redirectableBy({ path: 'old', mode: 0o775, uid: 1000 }, state, 1000, [1000]), /gid \?/, 'an unknown group is not private');
  t.strictSame(foreignWritable([home], 1000, [1000]), [], 'plain command mode: private too');
  t.strictSame(foreignWritable([home], 1000, []), ['/home/alice/.local is writable by its group']);
});
