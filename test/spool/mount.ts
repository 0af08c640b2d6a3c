import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, realpathSync } from 'node:fs';
import { basename } from 'node:path';
import { describeFileSystem, fileSystemWarnings, hasJournal, mountOf, parseMounts, type FileSystemInfo } from '../../src/spool/mount.js';
import { InProcessTaskManager } from '../../src/task-manager/in-process.js';
import { startServer, waitFor } from '../fixtures/helpers.js';

const MOUNTS = [
  '/dev/vda / ext4 rw,relatime,discard 0 0',
  'proc /proc proc rw,relatime 0 0',
  'tmpfs /dev/shm tmpfs rw,relatime 0 0',
  '/dev/loop0 /mnt/j ext4 rw,relatime 0 0',
  'server:/export /mnt/jobs nfs4 rw,relatime,vers=4.2 0 0',
  '/dev/sdb1 /srv/my\\040spool xfs rw 0 0',
  'tmpfs /mnt/j/over tmpfs rw 0 0',
  'tmpfs /mnt/j/over tmpfs rw 0 0',
  '/dev/loop1 /mnt/j/over xfs rw 0 0',
  '',
].join('\n');

t.test('parseMounts reads fields and undoes octal escapes', async (t) => {
  const mounts = parseMounts(MOUNTS);
  t.equal(mounts.length, 9, 'blank lines are skipped');
  t.strictSame(mounts[0], { device: '/dev/vda', mountPoint: '/', type: 'ext4' });
  t.strictSame(mounts[5], { device: '/dev/sdb1', mountPoint: '/srv/my spool', type: 'xfs' }, '\\040 is a space');
  t.strictSame(parseMounts('garbage\n\na b\n'), [], 'lines with fewer than three fields are skipped');
});

t.test('mountOf picks the deepest mount that holds the path, the last of several on one point', async (t) => {
  const mounts = parseMounts(MOUNTS);
  t.equal(mountOf(mounts, '/home/u/.local/state/wq/spool')?.mountPoint, '/', 'anything falls back to /');
  t.equal(mountOf(mounts, '/mnt/j')?.mountPoint, '/mnt/j', 'the mount point itself');
  t.equal(mountOf(mounts, '/mnt/j/spool/running')?.device, '/dev/loop0');
  t.equal(mountOf(mounts, '/mnt/jobs/spool')?.type, 'nfs4', '/mnt/jobs is not inside /mnt/j');
  t.equal(mountOf(mounts, '/mnt/jx')?.mountPoint, '/', 'a name that merely starts like a mount point is not in it');
  t.equal(mountOf(mounts, '/srv/my spool/requested')?.type, 'xfs');
  t.equal(mountOf(mounts, '/mnt/j/over/spool')?.device, '/dev/loop1', 'the mount made last on a point hides the others');
  t.equal(mountOf([], '/x'), undefined);
});

t.test('hasJournal reads ext4 journal_task', async (t) => {
  t.equal(hasJournal('<none>\n'), false);
  t.equal(hasJournal('27663\n'), true);
  t.equal(hasJournal(undefined), undefined, 'no such file');
  t.equal(hasJournal('something else'), undefined);
});

t.test('fileSystemWarnings: ext4 without a journal and network file systems, nothing for the usual ones', async (t) => {
  const info = (type: string, journal: boolean | undefined): FileSystemInfo => ({ device: '/dev/x', mountPoint: '/', type, journal });
  const noJournal = fileSystemWarnings(info('ext4', false));
  t.equal(noJournal.length, 1);
  t.match(noJournal[0], /ext4 without a journal/);
  t.match(noJournal[0], /fsck/, 'says what is at stake');
  t.match(noJournal[0], /docs\/operations\.md/, 'says where to read more');
  t.strictSame(fileSystemWarnings(info('ext4', true)), []);
  t.strictSame(fileSystemWarnings(info('ext4', undefined)), [], 'no warning when the journal cannot be told');
  for (const type of ['xfs', 'btrfs', 'tmpfs', 'ext3', 'zfs']) t.strictSame(fileSystemWarnings(info(type, undefined)), [], type);
  for (const type of ['nfs', 'nfs4', 'cifs']) t.match(fileSystemWarnings(info(type, undefined)), [/network file system/], type);
});

/**
 * What util-linux and the kernel's jbd2 directory say about `dir`, read
 * independently of src/spool/mount.ts: findmnt for the mount, and
 * /proc/fs/jbd2/<device>-<inode> (present for each mounted journal) for ext4.
 */
function independentView(dir: string): { type: string; target: string; journal: boolean | undefined } | undefined {
  const found = spawnSync('findmnt', ['-n', '-o', 'FSTYPE,TARGET,SOURCE', '-T', dir], { encoding: 'utf8' });
  if (found.status !== 0) return undefined;
  const [type, target, source] = found.stdout.trim().split(/\s+/);
  if (type === undefined || target === undefined || source === undefined) return undefined;
  let journal: boolean | undefined;
  if (type === 'ext4' && source.startsWith('/') && existsSync('/proc/fs')) {
    const name = basename(realpathSync(source));
    const journals = existsSync('/proc/fs/jbd2') ? readdirSync('/proc/fs/jbd2') : [];
    journal = journals.some((j) => j.startsWith(`${name}-`));
  }
  return { type, target, journal };
}

t.test('describeFileSystem agrees with findmnt and /proc/fs/jbd2 on a real directory', async (t) => {
  const dir = t.testdir();
  const theirs = independentView(dir);
  if (theirs === undefined) return t.skip('findmnt is not available');
  const ours = describeFileSystem(dir);
  t.ok(ours, 'described');
  t.equal(ours?.type, theirs.type, 'type');
  t.equal(ours?.mountPoint, theirs.target, 'mount point');
  if (theirs.type === 'ext4') t.equal(ours?.journal, theirs.journal, `journal (${theirs.journal ? 'present' : 'absent'} here)`);
  t.equal(describeFileSystem(`${dir}/does-not-exist`), undefined, 'a path that does not exist is not described');
});

t.test('the server warns at start exactly when the spool is on ext4 without a journal', async (t) => {
  const spool = t.testdir();
  const theirs = independentView(spool);
  if (theirs === undefined) return t.skip('findmnt is not available');
  const warnings: Array<{ message: string; fields?: Record<string, unknown> }> = [];
  const infos: string[] = [];
  const logger = {
    debug() {},
    info: (message: string) => void infos.push(message),
    warn: (message: string, fields?: Record<string, unknown>) => void warnings.push({ message, fields }),
    error() {},
  };
  const { stop } = startServer(t, new InProcessTaskManager(async () => 'ok', { maxTasks: 1 }), { spool, logger });
  await waitFor(() => infos.includes('server started'), 'the server to start');
  await stop();
  const expected = theirs.type === 'ext4' && theirs.journal === false;
  const ours = warnings.filter((w) => /the spool is on/.test(w.message));
  t.equal(ours.length, expected ? 1 : 0, `${theirs.type}${theirs.journal === false ? ' without a journal' : ''} here: ${expected ? 'one warning' : 'no warning'}`);
  if (expected) t.match(ours[0], { message: /ext4 without a journal/, fields: { type: 'ext4', mountPoint: theirs.target } });
});
