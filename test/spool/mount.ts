import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import {
  describeFileSystem,
  fileSystemWarnings,
  hasJournal,
  mountOf,
  parseMountInfo,
  systemSources,
  type FileSystemInfo,
  type FileSystemSources,
} from '../../src/spool/mount.js';
import type { WorkQueueServer } from '../../src/server.js';
import { InProcessTaskManager } from '../../src/task-manager/in-process.js';
import { startServerFrom } from '../fixtures/faulty-fs.js';
import { RecordingLogger, type LogLine } from '../fixtures/hostile.js';
import { startServer, waitFor } from '../fixtures/helpers.js';

// /proc/self/mountinfo as a VM image, a container and a lab host show it.
const MOUNTINFO = [
  '27 1 254:0 / / rw,relatime - ext4 /dev/root rw,discard',
  '22 27 0:21 / /proc rw,relatime - proc proc rw',
  '25 24 0:23 / /dev/shm rw,relatime shared:3 - tmpfs tmpfs rw,size=24684096k',
  '42 27 7:0 / /mnt/j rw,relatime shared:7 master:1 - ext4 /dev/loop0 rw',
  '44 27 0:50 / /mnt/jobs rw,relatime - nfs4 server:/export rw,vers=4.2',
  '45 27 8:17 /srv/spools /srv/my\\040spool rw - xfs /dev/sdb1 rw',
  '46 42 0:60 / /mnt/j/over rw - tmpfs tmpfs rw',
  '47 27 8:18 / /mnt/j rw - xfs /dev/sdb2 rw',
  'garbage',
  '',
].join('\n');

t.test('parseMountInfo reads the fields around the optional ones and undoes octal escapes', async (t) => {
  const mounts = parseMountInfo(MOUNTINFO);
  t.equal(mounts.length, 8, 'lines that are not entries are skipped');
  t.strictSame(mounts[0], { majorMinor: '254:0', mountPoint: '/', type: 'ext4', source: '/dev/root' });
  t.strictSame(mounts[3], { majorMinor: '7:0', mountPoint: '/mnt/j', type: 'ext4', source: '/dev/loop0' }, 'optional fields skipped');
  t.strictSame(mounts[5], { majorMinor: '8:17', mountPoint: '/srv/my spool', type: 'xfs', source: '/dev/sdb1' }, '\\040 is a space');
  t.strictSame(parseMountInfo('1 2 3 4 5 6 - x\n1 2 x:y / /a rw - ext4 /dev/a rw\n'), [], 'a line cut short or with a bad device number is skipped');
});

t.test('mountOf: the last mount that holds the path, on its file system when that is known', async (t) => {
  const mounts = parseMountInfo(MOUNTINFO);
  t.equal(mountOf(mounts, '/home/u/.local/state/wq/spool', '254:0')?.mountPoint, '/', 'anything falls back to /');
  t.equal(mountOf(mounts, '/mnt/jobs/spool', '0:50')?.type, 'nfs4');
  t.equal(mountOf(mounts, '/mnt/jx', '254:0')?.mountPoint, '/', 'a name that merely starts like a mount point is not in it');
  t.equal(mountOf(mounts, '/srv/my spool/requested', '8:17')?.type, 'xfs');
  t.equal(mountOf(mounts, '/mnt/j/over/spool', '8:18')?.source, '/dev/sdb2', 'a mount made later over /mnt/j hides the ones below it');
  t.equal(mountOf(mounts, '/mnt/j/over/spool', '0:60')?.type, 'tmpfs', 'the device number decides when it can');
  t.equal(mountOf(mounts, '/mnt/j/spool', '0:99')?.source, '/dev/sdb2', 'an unknown number (a btrfs subvolume): the last mount holding the path');
  t.equal(mountOf([], '/x', '1:1'), undefined);
});

t.test('hasJournal reads ext4 journal_task', async (t) => {
  t.equal(hasJournal('<none>\n'), false);
  t.equal(hasJournal('27663\n'), true);
  t.equal(hasJournal(undefined), undefined, 'no such file (not ext4, or Linux before 5.1)');
  t.equal(hasJournal('something else'), undefined);
});

/** Sources answering from plain data: the mounts above, a path on `majorMinor`. */
function fakeSources(majorMinor: string, journalTasks: Record<string, string>, names: Record<string, string> = { '254:0': 'vda', '7:0': 'loop0' }): FileSystemSources {
  return {
    mountInfo: () => MOUNTINFO,
    realPath: (path) => path,
    deviceOf: () => majorMinor,
    blockDeviceName: (mm) => names[mm],
    ext4JournalTask: (name) => journalTasks[name],
  };
}

t.test('describeFileSystem finds the journal through the device number, whatever the source is called', async (t) => {
  t.strictSame(describeFileSystem('/var/spool/wq', fakeSources('254:0', { vda: '<none>\n' })), { source: '/dev/root', mountPoint: '/', type: 'ext4', journal: false }, '/dev/root, no journal');
  t.equal(describeFileSystem('/mnt/j/wq', fakeSources('7:0', { loop0: '812\n' }))?.journal, true, 'a journal');
  t.equal(describeFileSystem('/var/spool/wq', fakeSources('254:0', {}))?.journal, undefined, 'no journal_task: not known');
  t.equal(describeFileSystem('/var/spool/wq', fakeSources('254:0', { vda: '<none>' }, {}))?.journal, undefined, 'not a block device: not known');
  t.strictSame(describeFileSystem('/mnt/jobs/q', fakeSources('0:50', {})), { source: 'server:/export', mountPoint: '/mnt/jobs', type: 'nfs4', journal: undefined });
  t.equal(describeFileSystem('/x', { ...fakeSources('254:0', {}), mountInfo: () => undefined }), undefined, 'no /proc');
  const gone: FileSystemSources = {
    ...fakeSources('254:0', {}),
    deviceOf: () => {
      throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    },
  };
  t.equal(describeFileSystem('/gone', gone), undefined, 'a path that cannot be looked at is not described');
});

t.test('fileSystemWarnings: ext4 without a journal, ext2, network file systems; nothing for the usual ones', async (t) => {
  const info = (type: string, journal: boolean | undefined): FileSystemInfo => ({ source: '/dev/x', mountPoint: '/', type, journal });
  const noJournal = fileSystemWarnings(info('ext4', false));
  t.equal(noJournal.length, 1);
  t.match(noJournal[0], /ext4 without a journal/);
  t.match(noJournal[0], /neither the default nor --durable mode/, 'says what is at stake');
  t.match(noJournal[0], /docs\/operations\.md/, 'says where to read more');
  t.match(fileSystemWarnings(info('ext2', undefined)), [/ext2, which has no journal/]);
  t.strictSame(fileSystemWarnings(info('ext4', true)), []);
  t.strictSame(fileSystemWarnings(info('ext4', undefined)), [], 'no warning when the journal cannot be told');
  for (const type of ['xfs', 'btrfs', 'tmpfs', 'ext3', 'zfs', 'overlay']) t.strictSame(fileSystemWarnings(info(type, undefined)), [], type);
  for (const type of ['nfs', 'nfs4', 'cifs', 'fuse.sshfs']) t.match(fileSystemWarnings(info(type, undefined)), [/network file system/], type);
});

/**
 * What util-linux and the kernel's jbd2 directory say about `dir`, read
 * independently of src/spool/mount.ts: findmnt for the mount, and
 * /proc/fs/jbd2/<device>-<inode> (there for each mounted journal) for ext4.
 */
function independentView(dir: string): { type: string; target: string; journal: boolean | undefined } | undefined {
  const found = spawnSync('findmnt', ['-n', '-o', 'FSTYPE,TARGET,MAJ:MIN', '-T', dir], { encoding: 'utf8' });
  if (found.status !== 0) return undefined;
  const [type, target, majorMinor] = found.stdout.trim().split(/\s+/);
  if (type === undefined || target === undefined || majorMinor === undefined) return undefined;
  let journal: boolean | undefined;
  if (type === 'ext4' && existsSync(`/sys/dev/block/${majorMinor}`) && existsSync('/proc/fs')) {
    const name = readlinkSync(`/sys/dev/block/${majorMinor}`).split('/').pop()!;
    journal = (existsSync('/proc/fs/jbd2') ? readdirSync('/proc/fs/jbd2') : []).some((j) => j.startsWith(`${name}-`));
  }
  return { type, target, journal };
}

const noFindmnt = spawnSync('findmnt', ['--version']).status !== 0 && 'findmnt (util-linux) is not installed';

t.test('on this machine, describeFileSystem agrees with findmnt and /proc/fs/jbd2', { skip: noFindmnt }, async (t) => {
  const dir = t.testdir();
  const theirs = independentView(dir);
  if (!t.ok(theirs, 'findmnt describes the directory') || theirs === undefined) return;
  const ours = describeFileSystem(dir);
  t.equal(ours?.type, theirs.type, 'type');
  t.equal(ours?.mountPoint, theirs.target, 'mount point');
  if (theirs.type === 'ext4' && ours?.journal !== undefined) t.equal(ours.journal, theirs.journal, `journal (${theirs.journal ? 'present' : 'absent'} here)`);
  t.equal(describeFileSystem(`${dir}/does-not-exist`), undefined, 'a path that does not exist is not described');
});

/** Starts a server whose spool seems to be on `info` (undefined: the real one), stops it once started; its warnings. */
async function warningsAtStart(t: Test, info?: FileSystemInfo): Promise<LogLine[]> {
  const spool = t.testdir();
  const logger = new RecordingLogger();
  const manager = new InProcessTaskManager(async () => 'ok', { maxTasks: 1 });
  let stop: () => Promise<void>;
  if (info === undefined) {
    ({ stop } = startServer(t, manager, { spool, logger }));
  } else {
    // A file system CI cannot mount: the description is injected, as a fault would be.
    // (Recovery at start asks; a mock reaches only the module loaded, so the modules above it are loaded on it.)
    const mount = await import('../../src/spool/mount.js');
    const recovery = await t.mockImport('../../src/spool/server/recovery.js', { '../../src/spool/mount.js': { ...mount, describeFileSystem: () => info } });
    const lifecycle = await t.mockImport('../../src/spool/server/lifecycle.js', { '../../src/spool/server/recovery.js': recovery });
    const { WorkQueueServer: Mocked } = await t.mockImport<{ WorkQueueServer: typeof WorkQueueServer }>('../../src/server.js', {
      '../../src/spool/server/lifecycle.js': lifecycle,
    });
    ({ stop } = startServerFrom(t, Mocked, manager, { spool, logger }));
  }
  await waitFor(() => logger.find('server started').length > 0, 'the server to start');
  await stop();
  return logger.find(/the spool is on/).filter((l) => l.level === 'warn');
}

t.test('the server warns once at start about ext4 without a journal, with the mount in the fields', async (t) => {
  const warnings = await warningsAtStart(t, { source: '/dev/root', mountPoint: '/', type: 'ext4', journal: false });
  t.equal(warnings.length, 1);
  t.match(warnings[0], { message: /ext4 without a journal/, fields: { source: '/dev/root', mountPoint: '/', type: 'ext4' } });
});

t.test('the server warns about a network file system', async (t) => {
  t.match(await warningsAtStart(t, { source: 'server:/export', mountPoint: '/mnt/jobs', type: 'nfs4', journal: undefined }), [{ message: /network file system \(nfs4\)/ }]);
});

t.test('the server says nothing about ext4 with a journal, XFS, or a file system it cannot describe', async (t) => {
  t.strictSame(await warningsAtStart(t, { source: '/dev/sda1', mountPoint: '/', type: 'ext4', journal: true }), []);
  t.strictSame(await warningsAtStart(t, { source: '/dev/sdb1', mountPoint: '/srv', type: 'xfs', journal: undefined }), []);
  t.strictSame(await warningsAtStart(t, { source: '/dev/root', mountPoint: '/', type: 'ext4', journal: undefined }), []);
});

t.test('on this machine, the server warns exactly when findmnt and /proc/fs/jbd2 say ext4 without a journal', { skip: noFindmnt }, async (t) => {
  const theirs = independentView(t.testdir());
  if (!t.ok(theirs, 'findmnt describes the directory') || theirs === undefined) return;
  const expected = theirs.type === 'ext4' && theirs.journal === false && describeFileSystem(t.testdir(), systemSources)?.journal !== undefined;
  const warnings = await warningsAtStart(t);
  t.equal(warnings.length, expected ? 1 : 0, `${theirs.type}${theirs.journal === false ? ' without a journal' : ''} here: ${expected ? 'one warning' : 'no warning'}`);
});
