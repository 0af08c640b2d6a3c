/**
 * LayoutGuard on real spools: what a check sees, and when a tick may skip it
 * (a live watch on the spool directory, nothing reported, under LAYOUT_RECHECK_MS).
 */
import { mkdirSync, realpathSync, renameSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { LAYOUT_RECHECK_MS, LayoutGuard } from '../../../src/spool/server/layout-guard.js';
import { silentLogger } from '../../../src/logger.js';
import { FaultLog } from '../../../src/spool/server/fault-log.js';
import { openSpool, type SpoolDir } from '../../../src/spool/layout.js';

function guardOn(t: Test, via: 'directory' | 'symlink' = 'directory'): { spool: string; guard: LayoutGuard; stops: Error[]; adopted: SpoolDir[] } {
  const root = realpathSync(t.testdir());
  const real = join(root, 'spool');
  openSpool(real);
  let spool = real;
  if (via === 'symlink') {
    spool = join(root, 'link');
    symlinkSync(real, spool);
  }
  const stops: Error[] = [];
  const adopted: SpoolDir[] = [];
  const guard = new LayoutGuard(openSpool(spool), {
    log: silentLogger,
    faults: new FaultLog(silentLogger),
    stop: (err) => void stops.push(err),
    adopted: (dir) => void adopted.push(dir),
  }, { uid: process.getuid?.() ?? 0, privateGids: [] });
  return { spool: real, guard, stops, adopted };
}

/** Swaps a state directory for a symlink to a directory outside the spool. */
function swapForSymlink(spool: string, dir: SpoolDir): void {
  const elsewhere = join(spool, '..', `elsewhere-${dir}`);
  mkdirSync(elsewhere);
  renameSync(join(spool, dir), join(spool, `${dir}.old`));
  symlinkSync(elsewhere, join(spool, dir));
}

t.test('without a watch, every check looks: a swapped directory stops the server at once', async (t) => {
  const { spool, guard, stops } = guardOn(t);
  t.equal(guard.check(false, 1000), true);
  swapForSymlink(spool, 'pending');
  t.equal(guard.check(false, 1001), false);
  t.match(stops, [{ message: /pending\/.*symbolic link/ }]);
});

t.test('with a live watch, a check is skipped until the watch reports a change or LAYOUT_RECHECK_MS pass', async (t) => {
  const { spool, guard, stops } = guardOn(t);
  guard.watched(true);
  t.equal(guard.check(false, 1000), true, 'the first check looks');
  swapForSymlink(spool, 'complete');
  t.equal(guard.check(false, 1000 + LAYOUT_RECHECK_MS - 1), true, 'unreported, within the interval: the last verdict stands');
  t.strictSame(stops, []);
  t.equal(guard.check(false, 1000 + LAYOUT_RECHECK_MS), false, 'the interval is over: it looks, and stops');
  t.match(stops, [{ message: /complete\/.*symbolic link/ }]);
});

t.test('with a live watch, a reported change is checked at the next tick', async (t) => {
  const { spool, guard, stops } = guardOn(t);
  guard.watched(true);
  t.equal(guard.check(false, 1000), true);
  swapForSymlink(spool, 'running');
  guard.changed();
  t.equal(guard.check(false, 1001), false);
  t.match(stops, [{ message: /running\/.*symbolic link/ }]);
});

t.test('a periodic check always looks; so does every check once the watch is gone', async (t) => {
  const { spool, guard, stops } = guardOn(t);
  guard.watched(true);
  t.equal(guard.check(false, 1000), true);
  swapForSymlink(spool, 'requested');
  t.equal(guard.check(true, 1001), false, 'periodic');
  t.equal(stops.length, 1);
  const second = guardOn(t);
  second.guard.watched(true);
  t.equal(second.guard.check(false, 1000), true);
  second.guard.watched(false);
  swapForSymlink(second.spool, 'aborting');
  t.equal(second.guard.check(false, 1001), false, 'watch gone');
  t.equal(second.stops.length, 1);
});

t.test('a spool reached through a symlink is checked at every tick, watch or not', async (t) => {
  const { spool, guard, stops } = guardOn(t, 'symlink');
  guard.watched(true); // the watch follows the symlink and would not see it change
  t.equal(guard.check(false, 1000), true);
  swapForSymlink(spool, 'pending');
  t.equal(guard.check(false, 1001), false);
  t.equal(stops.length, 1);
});

t.test('a missing directory keeps every check looking until it is back, then the new one is adopted', async (t) => {
  const { spool, guard, adopted } = guardOn(t);
  guard.watched(true);
  t.equal(guard.check(false, 1000), true);
  renameSync(join(spool, 'logs'), join(spool, 'logs.gone'));
  guard.changed();
  t.equal(guard.check(false, 1001), false, 'missing');
  mkdirSync(join(spool, 'logs')); // made again by hand: a new directory
  t.equal(guard.check(false, 1002), true, 'a failed check is not trusted: the next one looks, and finds it back');
  t.strictSame(adopted, ['logs'], 'and serves the new directory');
});
