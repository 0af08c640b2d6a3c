/**
 * Lock torture, the short variant (the long one is `npm run torture --
 * --lock-race`): real servers race over a stale lock, trial after trial, and
 * exactly one serves each time. Its racers run compiled JavaScript, so the
 * test first compiles src/ and bench/ into its own directory. Also the verdict
 * on plain data, so each check is shown to catch what it is meant to catch.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { judgeLockRace, staleLock } from '../bench/torture-lock.js';
import type * as TortureLock from '../bench/torture-lock.js';
import { ROOT } from './fixtures/helpers.js';

const SHORT = { trials: 12, racers: 4 };
// Compiling src/ and bench/ alone takes half a minute on a loaded machine.
t.setTimeout(300_000);

t.test(`lock torture: ${SHORT.trials} trials of ${SHORT.racers} servers starting at once on a stale lock, never two serving`, async (t) => {
  const dir = t.testdir();
  const build = join(dir, 'build');
  const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.bench.json'), '--outDir', build], { encoding: 'utf8' });
  t.equal(tsc.status, 0, 'bench/ compiles', { output: tsc.stdout + tsc.stderr });
  if (tsc.status !== 0) return;
  const { runLockRace, formatLockRace } = (await import(pathToFileURL(join(build, 'bench', 'torture-lock.js')).href)) as typeof TortureLock;
  const workDir = join(dir, 'work');
  mkdirSync(workDir);
  const report = await runLockRace({ ...SHORT, workDir });
  t.comment(formatLockRace(report));
  t.strictSame(report.winners, Array.from({ length: SHORT.trials }, () => 1), 'one winner per trial');
  t.strictSame(report.violations, [], 'no two servers ever held the lock at once');
});

t.test('the lock verdict: a clean run passes; two holders, none, or an overlap are caught', async (t) => {
  const clean = 'take 10 0\nrelease 10 0\ntake 11 1\nrelease 11 1\n';
  t.strictSame(judgeLockRace([1, 1], clean), []);
  t.match(judgeLockRace([2, 1], clean).join('\n'), /trial 0: 2 servers won/);
  t.match(judgeLockRace([1, 0], clean).join('\n'), /trial 1: 0 servers won/);
  t.match(judgeLockRace([1, 1], 'take 10 0\ntake 12 0\nrelease 10 0\nrelease 12 0\n').join('\n'), /trial 0: pid 12 took the lock while 10 \(trial 0\) held it/);
  t.match(judgeLockRace([1], 'take 10 0\nrelease 10 0\ngarbled\n').join('\n'), /unreadable line "garbled"/);
});

t.test('the stale locks left before trials: a dead pid, pid 1, a racer\'s own pid, garbage', async (t) => {
  t.match(JSON.parse(staleLock(0, 42, 7)), { pid: 7 });
  t.match(JSON.parse(staleLock(1, 42, 7)), { pid: 1 });
  t.match(JSON.parse(staleLock(2, 42, 7)), { pid: 42 });
  t.equal(staleLock(3, 42, 7), 'garbage');
});
