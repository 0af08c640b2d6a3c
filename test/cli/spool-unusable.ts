/**
 * A spool that cannot be used makes every command exit 3 with a message that
 * names the spool and the cause (docs/cli.md, exit codes), never exit 1 with a
 * raw errno on an internal file: a path that is a file, another user's spool,
 * a read-only file system.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { openSpool } from '../../src/spool/layout.js';
import { spoolContents, startCliServer, waitFor } from '../fixtures/helpers.js';
import { wq } from '../fixtures/cli.js';
import { assertOtherUsersCanRunWq, NEEDS_ROOT, NOBODY, publicTempDir, wqAs } from '../fixtures/other-users.js';
import { canMountTmpfs, mountTmpfs } from '../fixtures/tmpfs.js';

const SOME_ID = '1763830000000000-0123456789ab';

/** Every command, on `spool` (serve only refuses; it must never start). */
function commands(spool: string, id = SOME_ID): Array<[string, string[]]> {
  return [
    ['enqueue', ['enqueue', '--spool', spool, '--', 'true']],
    ['wait', ['wait', '--spool', spool, id]],
    ['abort', ['abort', '--spool', spool, id]],
    ['status', ['status', '--spool', spool]],
    ['serve', ['serve', '--spool', spool]],
  ];
}

t.test('a spool path that is a file: every command exits 3 and says it is not a directory', async (t) => {
  const dir = realpathSync(t.testdir({ 'a-file': 'not a spool\n' }));
  const spool = join(dir, 'a-file');
  for (const [name, args] of commands(spool)) {
    const r = await wq(args);
    t.equal(r.code, 3, `${name}: exit 3`);
    t.equal(r.stderr, `wq: spool ${spool} cannot be used: it is not a directory\n`, `${name}: names the spool and the cause`);
  }
  const below = join(spool, 'spool');
  for (const [name, args] of commands(below)) {
    const r = await wq(args);
    t.equal(r.code, 3, `${name} on a path through a file: exit 3`);
    t.match(r.stderr, new RegExp(`^wq: spool ${below} (cannot be used: a part of its path is not a directory|does not exist)`), `${name}: names the spool and the cause`);
    t.notMatch(r.stderr, /ENOTDIR/, `${name}: no raw errno`);
  }
});

t.test("another user's spool: exit 3, naming the spool, the cause and the user", { skip: NEEDS_ROOT }, async (t) => {
  if (!assertOtherUsersCanRunWq(t, NOBODY.uid, NOBODY.gid)) return;
  const dir = publicTempDir(t, 'wq-theirs-');
  // Root's spool, as wq makes one: 755, readable by everyone, writable only by root.
  const spool = join(dir, 'spool');
  openSpool(spool);
  const server = await startCliServer(t, spool);
  const done = await wq(['enqueue', '--spool', spool, '--', 'true']);
  const id = done.stdout.trim();
  await waitFor(() => spoolContents(spool).complete.includes(id), "root's request to complete");
  server.kill('SIGTERM');
  await waitFor(() => server.exitCode !== null, 'the server to stop');
  const denied = new RegExp(`^wq: spool ${spool} cannot be used: permission denied for uid ${NOBODY.uid} \\((creating a file in its tmp/ directory|opening its server\\.lock)\\)\\n$`);
  for (const [name, args] of commands(spool, id)) {
    const r = await wqAs(NOBODY, args);
    if (name === 'status') {
      t.equal(r.code, 0, 'status only reads: it works');
      continue;
    }
    t.equal(r.code, 3, `${name}: exit 3`);
    t.match(r.stderr, denied, `${name}: names the spool, the cause and the user`);
  }
  t.same(spoolContents(spool).complete, [id], "root's result is still there");

  // A spool nobody else may even look into (700).
  chmodSync(spool, 0o700);
  const more: Array<[string, string[]]> = [
    ['wait --keep', ['wait', '--spool', spool, '--keep', id]],
    ['abort --all', ['abort', '--spool', spool, '--all']],
  ];
  for (const [name, args] of [...commands(spool, id), ...more]) {
    const r = await wqAs(NOBODY, args);
    t.equal(r.code, 3, `${name} on a 700 spool: exit 3`);
    t.match(r.stderr, new RegExp(`^wq: spool ${spool} cannot be used: permission denied for uid ${NOBODY.uid} \\(`), `${name} on a 700 spool: says why`);
  }
});

t.test('a spool on a read-only file system: exit 3, naming the spool and the cause', { skip: canMountTmpfs ? false : 'needs to mount a tmpfs' }, async (t) => {
  const fs = mountTmpfs(t, '4m');
  const spool = join(fs, 'spool');
  const server = await startCliServer(t, spool);
  const id = (await wq(['enqueue', '--spool', spool, '--', 'true'])).stdout.trim();
  await waitFor(() => spoolContents(spool).complete.includes(id), 'its result');
  server.kill('SIGTERM');
  await waitFor(() => server.exitCode !== null, 'the server to stop');
  const empty = join(fs, 'empty');
  mkdirSync(empty);
  execFileSync('mount', ['-o', 'remount,ro', fs]);
  for (const [name, args] of commands(spool, id)) {
    const r = await wq(args);
    if (name === 'status') {
      t.equal(r.code, 0, 'status only reads: it works');
      continue;
    }
    t.equal(r.code, 3, `${name}: exit 3`);
    t.match(r.stderr, new RegExp(`^wq: spool ${spool} cannot be used: its file system is read-only \\(`), `${name}: names the spool and the cause`);
    t.notMatch(r.stderr, /EROFS|\.\d+'/, `${name}: no raw errno or temp file`);
  }
  t.same(spoolContents(spool).complete, [id], 'the result is still there to claim once the spool is writable');
  // An empty directory there: the format marker cannot be written.
  for (const [name, args] of commands(empty).filter(([name]) => name !== 'status')) {
    const r = await wq(args);
    t.equal(r.code, 3, `${name} on an empty read-only directory: exit 3`);
    t.equal(r.stderr, `wq: spool ${empty} cannot be used: its file system is read-only (writing its format file)\n`, `${name}: says which file`);
  }
});
