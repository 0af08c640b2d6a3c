/**
 * `npm run torture`: the crash torture (see torture-run.ts). 50 waiting
 * clients, a server SIGKILLed at random moments until 25 serving kills (or
 * 300 s), clients killed mid-wait and mid-enqueue; then every guarantee is
 * checked (torture-check.ts). Prints the seed first and a summary last; exits
 * 1 on any violation. The work directory is removed after a clean run and kept
 * after a failed one.
 *
 *   node dist-bench/bench/torture.js [--seed N] [--clients N] [--kills N] [--min-kills N]
 *                                    [--max-seconds N] [--max-tasks N] [--durable] [--debug-log] [--keep] [--json]
 *
 * `--lock-race [--trials N] [--racers N]` runs the lock torture instead (torture-lock.ts):
 * racing starters on a stale lock never both serve.
 * `--orphans` runs the orphan torture instead (torture-orphans.ts): a real `wq serve` whose
 * tasks outlive it is SIGKILLed `--kills` times (default 10) under `--max-tasks` (default 2).
 */
import { randomInt } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_LOCK_RACE, formatLockRace, runLockRace } from './torture-lock.js';
import { fileURLToPath } from 'node:url';
import { DEFAULT_TORTURE_OPTIONS, formatSummary, runTorture, type TortureOptions } from './torture-run.js';
import { formatOrphanSummary, runOrphanTorture } from './torture-orphans.js';

function parseOptions(): { options: Omit<TortureOptions, 'workDir' | 'progress'>; keep: boolean; json: boolean; orphans: boolean; killsGiven: boolean; maxTasksGiven: boolean } {
  const { values } = parseArgs({
    options: {
      seed: { type: 'string' },
      clients: { type: 'string' },
      kills: { type: 'string' },
      'min-kills': { type: 'string' },
      'max-seconds': { type: 'string' },
      'max-tasks': { type: 'string' },
      durable: { type: 'boolean', default: false },
      'debug-log': { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      orphans: { type: 'boolean', default: false },
    },
  });
  const int = (name: string, value: string | undefined, fallback: number, min = 0): number => {
    if (value === undefined) return fallback;
    const n = Number(value);
    if (!(Number.isInteger(n) && n >= min)) throw new Error(`Expected \`--${name}\` to be an integer >= ${min}, got \`${value}\``);
    return n;
  };
  const d = DEFAULT_TORTURE_OPTIONS;
  const kills = int('kills', values.kills, d.kills, 1);
  return {
    options: {
      ...d,
      seed: int('seed', values.seed, randomInt(2 ** 32 - 1)),
      clients: int('clients', values.clients, d.clients, 1),
      kills,
      minKills: Math.min(kills, int('min-kills', values['min-kills'], d.minKills)),
      maxSeconds: int('max-seconds', values['max-seconds'], d.maxSeconds, 1),
      maxTasks: int('max-tasks', values['max-tasks'], d.maxTasks, 1),
      durable: values.durable,
      debugLog: values['debug-log'],
    },
    keep: values.keep,
    json: values.json,
    orphans: values.orphans,
    killsGiven: values.kills !== undefined,
    maxTasksGiven: values['max-tasks'] !== undefined,
  };
}

function machine(dir: string): string {
  const mount = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f.length > 2 && dir.startsWith(f[1]!))
    .sort((a, b) => b[1]!.length - a[1]!.length)[0];
  const fs = mount === undefined ? 'unknown' : `${mount[2]} (${mount[1]})`;
  return `${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${release()}, Node ${process.version}, spool on ${fs}`;
}

/** `--lock-race`: parsed apart, so the crash torture's options stay as they are. */
async function lockRace(): Promise<void> {
  const { values } = parseArgs({ options: { 'lock-race': { type: 'boolean' }, trials: { type: 'string' }, racers: { type: 'string' }, keep: { type: 'boolean', default: false } } });
  const int = (name: string, value: string | undefined, fallback: number): number => {
    const n = value === undefined ? fallback : Number(value);
    if (!(Number.isInteger(n) && n >= 1)) throw new Error(`Expected \`--${name}\` to be an integer >= 1, got \`${value}\``);
    return n;
  };
  const options = { trials: int('trials', values.trials, DEFAULT_LOCK_RACE.trials), racers: int('racers', values.racers, DEFAULT_LOCK_RACE.racers) };
  const workDir = mkdtempSync(join(tmpdir(), 'wq-lock-race-'));
  process.stderr.write(`lock torture: ${options.trials} trials of ${options.racers} racing starters; work dir ${workDir}\n`);
  process.stderr.write(`machine: ${machine(workDir)}\n`);
  const report = await runLockRace({ ...options, workDir, progress: (line) => process.stderr.write(`  ${line}\n`) });
  const ok = report.violations.length === 0;
  process.stdout.write(`\n${formatLockRace(report)}\n`);
  process.stdout.write(ok ? 'PASS: exactly one server won every trial; no two ever held the lock at once\n' : `FAIL: ${report.violations.length} violation(s):\n${report.violations.map((v) => `  - ${v}`).join('\n')}\n`);
  if (ok && values.keep !== true) rmSync(workDir, { recursive: true, force: true });
  else process.stderr.write(`work dir kept: ${workDir}\n`);
  process.exitCode = ok ? 0 : 1;
}

/** The orphan torture: prints its figures; exits 1 on any violation. */
async function orphans(o: ReturnType<typeof parseOptions>): Promise<void> {
  const workDir = mkdtempSync(join(tmpdir(), 'wq-orphan-torture-'));
  const kills = o.killsGiven ? o.options.kills : 10;
  const maxTasks = o.maxTasksGiven ? o.options.maxTasks : 2;
  process.stderr.write(`orphan torture: seed ${o.options.seed} (replay: npm run torture -- --orphans --seed ${o.options.seed}); work dir ${workDir}\n`);
  process.stderr.write(`machine: ${machine(workDir)}\n`);
  const report = await runOrphanTorture({
    seed: o.options.seed,
    kills,
    maxTasks,
    requests: kills * maxTasks * 2,
    workTenths: [5, 30],
    serveMs: [300, 2500],
    wq: fileURLToPath(new URL('../../bin/wq', import.meta.url)),
    workDir,
    progress: (line) => process.stderr.write(`  ${line}\n`),
  });
  const ok = report.violations.length === 0;
  if (o.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else process.stdout.write(`\n${formatOrphanSummary(report)}\n${ok ? 'PASS: no violations' : `FAIL: ${report.violations.length} violation(s):\n${report.violations.map((v) => `  - ${v}`).join('\n')}`}\nseed ${report.seed}\n`);
  if (ok && !o.keep) rmSync(workDir, { recursive: true, force: true });
  else process.stderr.write(`work dir kept: ${workDir}\n`);
  process.exitCode = ok ? 0 : 1;
}

async function main(): Promise<void> {
  if (process.argv.includes('--lock-race')) return lockRace();
  const parsed = parseOptions();
  if (parsed.orphans) return orphans(parsed);
  const { options, keep, json } = parsed;
  const workDir = mkdtempSync(join(tmpdir(), 'wq-torture-'));
  process.stderr.write(`crash torture: seed ${options.seed} (replay: npm run torture -- --seed ${options.seed}); work dir ${workDir}\n`);
  process.stderr.write(`machine: ${machine(workDir)}\n`);
  const report = await runTorture({ ...options, workDir, progress: (line) => process.stderr.write(`  ${line}\n`) });
  const ok = report.violations.length === 0;
  if (json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else {
    process.stdout.write(`\n${formatSummary(report, options)}\n`);
    process.stdout.write(ok ? 'PASS: no violations\n' : `FAIL: ${report.violations.length} violation(s):\n${report.violations.map((v) => `  - ${v}`).join('\n')}\n`);
    process.stdout.write(`seed ${report.seed}\n`);
  }
  if (ok && !keep) rmSync(workDir, { recursive: true, force: true });
  else process.stderr.write(`work dir kept: ${workDir}\n`);
  process.exitCode = ok ? 0 : 1;
}

await main();
