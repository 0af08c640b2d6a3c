import t from 'tap';
import { foreignWritable, mayAbort } from '../src/permissions.js';

t.test('foreignWritable: group- or world-writable directories, or ones another user owns', async (t) => {
  const dirs = [
    { path: 'private', mode: 0o40755, uid: 1000 },
    { path: 'group-writable', mode: 0o42775, uid: 1000 },
    { path: 'world-writable', mode: 0o41777, uid: 1000 },
    { path: 'someone-elses', mode: 0o40755, uid: 2000 },
  ];
  t.strictSame(foreignWritable(dirs, 1000), ['group-writable', 'world-writable', 'someone-elses']);
  t.strictSame(foreignWritable([dirs[0]!], 1000), []);
  t.strictSame(foreignWritable([dirs[3]!], 0), [], 'root serving a directory another user owns (but cannot write) is not flagged for ownership');
});

t.test('mayAbort: the owner, the server user and root may; others only under the anyone policy', async (t) => {
  t.ok(mayAbort(1000, 1000, 500, 'owner'), 'owner');
  t.ok(mayAbort(500, 1000, 500, 'owner'), 'server user');
  t.ok(mayAbort(0, 1000, 500, 'owner'), 'root');
  t.notOk(mayAbort(2000, 1000, 500, 'owner'), 'another user');
  t.ok(mayAbort(2000, 1000, 500, 'anyone'), 'another user, anyone policy');
  t.ok(mayAbort(2000, undefined, 500, 'owner'), 'unknown owner (request not seen yet): decided when it appears');
});
