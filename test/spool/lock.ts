import t, { type Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { SpoolLockedError } from '../../src/errors.js';
import { openSpool, type SpoolPaths } from '../../src/spool/layout.js';
import { describeFileSystem, isNetworkFileSystem } from '../../src/spool/mount.js';
import { acquireLock, currentBootId, isServing, processStartTicks, readLockOwner, type LockOwner } from '../../src/spool/lock.js';
import { ROOT, waitFor } from '../fixtures/helpers.js';
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

t.test('a lock held by a live server process on this host is respected, and seen from outside', async (t) => {
  const paths = spool(t);
  const other = racer(t, paths.root);
  other.child.stdin!.write('go 0\n');
  t.equal(await other.next(), 'won');
  t.ok(isServing(paths, readLockOwner(paths)), 'a reader sees a server (and took no lock to see it)');
  t.throws(() => acquireLock(paths), { name: 'SpoolLockedError', ownerPid: other.child.pid });
  t.equal(readLockOwner(paths)?.pid, other.child.pid, 'left in place');
  other.child.kill('SIGKILL');
  await waitFor(() => !isServing(paths, readLockOwner(paths)), 'the kernel to drop the SIGKILLed holder\'s lock');
  const lock = acquireLock(paths);
  t.equal(readLockOwner(paths)?.pid, process.pid, 'taken over at once');
  lock.release();
});

t.test('a lock whose recorded pid is alive but an unrelated process (pid 1, or the starting process itself) is not "already serving"', async (t) => {
  for (const pid of [1, process.pid]) {
    const paths = spool(t);
    writeLock(paths, { pid, host: hostname(), bootId: currentBootId(), startTicks: processStartTicks(pid) });
    t.notOk(isServing(paths, readLockOwner(paths)), `pid ${pid}: no server is seen`);
    const lock = acquireLock(paths);
    t.equal(readLockOwner(paths)?.pid, process.pid, `pid ${pid}: taken over`);
    lock.release();
  }
});

t.test('a starter that meets only a reader\'s shared lock waits it out instead of refusing', async (t) => {
  const paths = spool(t);
  writeLock(paths, { pid: deadPid(), host: hostname() });
  // A reader (wq status in a container) holds a shared lock for a moment; this one holds it for 300 ms.
  const reader = spawn('flock', ['--shared', paths.lockFile, '-c', 'echo held; sleep 0.3'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => {
    reader.kill('SIGKILL');
  });
  await new Promise((resolve) => reader.stdout!.once('data', resolve));
  const lock = acquireLock(paths);
  t.equal(readLockOwner(paths)?.pid, process.pid, 'taken once the reader let go');
  t.ok(lock.stillHeld());
  lock.release();
});

t.test('a lock naming another host: taken over on a local file system (a re-created container), refused on a network one', async (t) => {
  const paths = spool(t);
  const pid = deadPid();
  const text = JSON.stringify({ pid, host: `not-${hostname()}`, startedAt: 1 });
  writeLock(paths, text);
  const info = describeFileSystem(paths.root);
  if (info !== undefined && !isNetworkFileSystem(info)) {
    const lock = acquireLock(paths);
    t.equal(readLockOwner(paths)?.host, hostname(), 'nothing held the lock: this machine under another name left it');
    lock.release();
  } else {
    t.throws(() => acquireLock(paths), { name: 'SpoolLockedError', ownerPid: pid, message: new RegExp(`not-${hostname()}`) });
    t.equal(readFileSync(paths.lockFile, 'utf8'), text, 'left exactly as it was');
  }
  t.equal(isNetworkFileSystem({ source: 'server:/export', mountPoint: '/mnt', type: 'nfs4', journal: undefined }), true, 'nfs4 may be mounted by other hosts');
});

t.test('stillHeld turns false when the file is replaced, not when it is rewritten in place', async (t) => {
  const paths = spool(t);
  const lock = acquireLock(paths);
  t.ok(lock.stillHeld());
  writeLock(paths, { ...lock.owner, startedAt: lock.owner.startedAt + 1 });
  t.ok(lock.stillHeld(), 'the same file, edited: the kernel lock on it is still ours');
  const replacement = join(paths.dirs.tmp, 'replacement');
  writeFileSync(replacement, JSON.stringify(lock.owner));
  renameSync(replacement, paths.lockFile);
  t.notOk(lock.stillHeld(), 'another file at the name, even with our owner facts');
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

// ---- racing starters -----------------------------------------------------------------------

/** A lock-racer.mjs process (a starting server's acquireLock in a process of its own) and its answers. */
function racer(t: Test, spoolDir: string): { child: ChildProcess; next: () => Promise<string> } {
  const child = spawn(process.execPath, [join(ROOT, 'test', 'fixtures', 'lock-racer.mjs'), spoolDir], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const lines: string[] = [];
  const waiting: Array<(line: string) => void> = [];
  createInterface({ input: child.stdout! }).on('line', (line) => (waiting.length > 0 ? waiting.shift()!(line) : lines.push(line)));
  const next = (): Promise<string> => (lines.length > 0 ? Promise.resolve(lines.shift()!) : new Promise((resolve) => waiting.push(resolve)));
  return { child, next };
}

const RACERS = 5;
const RACE_TRIALS = 40;
/** How far ahead the start moment is set, so every racer is spinning when it comes (the first time, they are still loading). */
const RACE_LEAD_MS = { first: 3000, next: 50 };

t.test(`racing starters on a stale lock: exactly one of ${RACERS} wins, ${RACE_TRIALS} times`, async (t) => {
  const paths = spool(t);
  const racers = Array.from({ length: RACERS }, () => racer(t, paths.root));
  const winnersPerTrial: number[] = [];
  for (let trial = 0; trial < RACE_TRIALS; trial++) {
    // Left by a server that died: a dead pid, or a live unrelated one (pid reused).
    writeLock(paths, { pid: trial % 2 === 0 ? deadPid() : 1, host: hostname(), bootId: currentBootId() });
    const at = Date.now() + (trial === 0 ? RACE_LEAD_MS.first : RACE_LEAD_MS.next);
    for (const r of racers) r.child.stdin!.write(`go ${at}\n`);
    const answers = await Promise.all(racers.map((r) => r.next()));
    const winners = racers.filter((_, i) => answers[i] === 'won');
    winnersPerTrial.push(winners.length);
    t.ok(answers.every((a) => a === 'won' || a.startsWith('lost SpoolLockedError')), `trial ${trial}: each racer won or was told the spool is served`, { answers });
    for (const w of winners) w.child.stdin!.write('release\n');
    await Promise.all(winners.map((w) => w.next()));
  }
  t.comment(`winners per trial: ${winnersPerTrial.join(' ')}`);
  t.strictSame(winnersPerTrial.filter((n) => n !== 1), [], 'never two holders, never none');
});
