import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { SpoolLockedError } from '../../src/errors.js';
import { openSpool, type SpoolPaths } from '../../src/spool/layout.js';
import { acquireLock, currentBootId, readLockOwner, type LockOwner } from '../../src/spool/lock.js';
import { deadPid } from '../fixtures/processes.js';

function spool(t: Test): SpoolPaths {
  return openSpool(t.testdir());
}

function writeLock(paths: SpoolPaths, owner: Partial<LockOwner> | string): void {
  writeFileSync(paths.lockFile, typeof owner === 'string' ? owner : JSON.stringify({ startedAt: 1, ...owner }));
}

t.test('one holder at a time; the second is told who holds it', async (t) => {
  const paths = spool(t);
  const lock = acquireLock(paths, { maxTasks: 3 });
  t.equal(lock.owner.pid, process.pid);
  t.equal(lock.owner.host, hostname());
  t.ok(lock.stillHeld());
  const onDisk = readLockOwner(paths);
  t.match(onDisk, { pid: process.pid, host: hostname(), info: { maxTasks: 3 } });
  if (currentBootId() !== undefined) t.equal(onDisk?.bootId, currentBootId(), 'boot id recorded');

  const err = t.throws(() => acquireLock(paths)) as SpoolLockedError;
  t.type(err, SpoolLockedError);
  t.equal(err.code, 'ERR_SPOOL_LOCKED');
  t.equal(err.ownerPid, process.pid);
  t.match(err.message, String(process.pid));
  t.ok(lock.stillHeld(), 'the failed attempt did not disturb the holder');
  t.strictSame(readdirSync(paths.dirs.tmp), [], 'no temp files left behind');

  lock.release();
  t.notOk(existsSync(paths.lockFile), 'release removes the lock');
  t.notOk(lock.stillHeld());
  lock.release(); // twice is harmless

  const again = acquireLock(paths);
  t.ok(again.stillHeld(), 'taken again after release');
  again.release();
});

t.test('a lock naming a dead process on this host is taken over', async (t) => {
  const paths = spool(t);
  const pid = deadPid();
  writeLock(paths, { pid, host: hostname() });
  const lock = acquireLock(paths);
  t.equal(readLockOwner(paths)?.pid, process.pid, 'the lock now names us');
  t.ok(lock.stillHeld());
  t.notOk(existsSync(`${paths.lockFile}.steal`), 'the steal marker is gone');
  t.strictSame(readdirSync(paths.dirs.tmp), []);
  lock.release();
});

t.test('a lock from an earlier boot of this host is taken over', { skip: currentBootId() === undefined && 'no boot id on this system' }, async (t) => {
  const paths = spool(t);
  writeLock(paths, { pid: process.pid, host: hostname(), bootId: '00000000-0000-0000-0000-000000000000' });
  const lock = acquireLock(paths);
  t.equal(readLockOwner(paths)?.bootId, currentBootId());
  lock.release();
});

t.test('a garbage lock file is taken over', async (t) => {
  const garbage = ['', 'not json', '{"pid":"12","host":"x"}', '{"host":"x"}', 'null', '[1,2]', '\u0000\u0001\u0002'];
  for (const text of garbage) {
    const paths = spool(t);
    writeLock(paths, text);
    const lock = acquireLock(paths);
    t.equal(readLockOwner(paths)?.pid, process.pid, JSON.stringify(text));
    lock.release();
  }
});

t.test('a lock naming a pid no process can have is garbage too', async (t) => {
  // pid 0 and negative pids address process groups in kill(2), and pids past
  // the kernel's range cannot exist: none of them can be a live server.
  for (const pid of [0, -1, 2 ** 40]) {
    const paths = spool(t);
    writeLock(paths, { pid, host: hostname() });
    let taken = false;
    try {
      acquireLock(paths).release();
      taken = true;
    } catch (err) {
      t.comment(`pid ${pid}: ${String(err)}`);
    }
    t.ok(taken, `a lock with pid ${pid} is taken over`);
  }
});

t.test('a lock held by a live process on this host is respected', async (t) => {
  const paths = spool(t);
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  writeLock(paths, { pid: child.pid!, host: hostname() });
  t.throws(() => acquireLock(paths), { name: 'SpoolLockedError', ownerPid: child.pid });
  t.equal(readLockOwner(paths)?.pid, child.pid, 'left in place');
});

t.test('a lock from another host is never taken over, even with a dead pid', async (t) => {
  const paths = spool(t);
  const pid = deadPid();
  const text = JSON.stringify({ pid, host: `not-${hostname()}`, startedAt: 1 });
  writeLock(paths, text);
  t.throws(() => acquireLock(paths), { name: 'SpoolLockedError', ownerPid: pid, message: new RegExp(`not-${hostname()}`) });
  t.equal(readFileSync(paths.lockFile, 'utf8'), text, 'left exactly as it was');
});

t.test('a take-over in progress elsewhere is not trampled', async (t) => {
  const paths = spool(t);
  const pid = deadPid();
  writeLock(paths, { pid, host: hostname() });
  writeFileSync(`${paths.lockFile}.steal`, ''); // another server is replacing the stale lock right now
  t.throws(() => acquireLock(paths), { message: /kept changing hands/ });
  t.equal(readLockOwner(paths)?.pid, pid, 'the stale lock was left to the other server');
  t.ok(existsSync(`${paths.lockFile}.steal`), 'a fresh marker is left alone');
});

t.test('stillHeld turns false when the file is replaced', async (t) => {
  const paths = spool(t);
  const lock = acquireLock(paths);
  t.ok(lock.stillHeld());
  writeLock(paths, { ...lock.owner, startedAt: lock.owner.startedAt + 1 });
  t.notOk(lock.stillHeld(), 'another owner record');
  writeLock(paths, JSON.stringify(lock.owner) + '\n');
  t.notOk(lock.stillHeld(), 'even the same owner written differently');
  lock.release();
  t.ok(existsSync(paths.lockFile), 'release does not remove a lock that is no longer ours');
});

t.test('stillHeld turns false when the file is removed', async (t) => {
  const paths = spool(t);
  const lock = acquireLock(paths);
  unlinkSync(paths.lockFile);
  t.notOk(lock.stillHeld());
  lock.release();
  t.notOk(existsSync(paths.lockFile), 'release of a lost lock creates nothing');
});
