/**
 * The lock torture (`npm run torture -- --lock-race`): racing starters fight
 * over a stale lock, trial after trial. Before each trial the harness leaves
 * what a crashed server leaves (a lock naming a dead pid, a live but unrelated
 * pid such as 1 or a racer's own, or garbage); then every racer
 * (torture-lock-racer.ts, a real WorkQueueServer) starts at the same moment.
 * The verdict: in every trial exactly one server serves, and the shared ledger
 * of takes and releases never shows two holders at once.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { openSpool } from '../src/spool/layout.js';

export interface LockRaceOptions {
  trials: number;
  racers: number;
  workDir: string;
  progress?: (line: string) => void;
}

export const DEFAULT_LOCK_RACE = { trials: 200, racers: 5 };
/** How far ahead the start moment is set: the first time the racers are still loading. */
const LEAD_MS = { first: 10_000, next: 100 };
/** A racer that has not answered by then is reported, not waited for forever. */
const ANSWER_TIMEOUT_MS = 60_000;

export interface LockRaceReport {
  trials: number;
  racers: number;
  /** Winners in each trial, in order. */
  winners: number[];
  violations: string[];
  seconds: number;
}

/** What the harness leaves in server.lock before trial `n`: what crashed servers leave. */
export function staleLock(n: number, racerPid: number, deadPid: number): string {
  const owner = (pid: number) => JSON.stringify({ pid, host: hostname(), startedAt: 1 });
  switch (n % 4) {
    case 0:
      return owner(deadPid);
    case 1:
      return owner(1); // a live process that is no server (a reused pid; a container's pid 1)
    case 2:
      return owner(racerPid); // one of the starters itself
    default:
      return 'garbage';
  }
}

/**
 * The verdict on plain data: `winners[i]` racers won trial i; the ledger holds
 * `take <pid> <trial>` and `release <pid> <trial>` lines in the order they happened.
 */
export function judgeLockRace(winners: number[], ledger: string): string[] {
  const violations: string[] = [];
  winners.forEach((n, trial) => {
    if (n !== 1) violations.push(`trial ${trial}: ${n} servers won the lock (exactly one must)`);
  });
  const holders = new Set<string>();
  for (const line of ledger.split('\n').filter(Boolean)) {
    const [verb, pid, trial] = line.split(' ');
    if (verb === 'take') {
      if (holders.size > 0) violations.push(`trial ${trial}: pid ${pid} took the lock while ${[...holders].join(', ')} held it`);
      holders.add(`${pid} (trial ${trial})`);
    } else if (verb === 'release') {
      holders.delete(`${pid} (trial ${trial})`);
    } else violations.push(`ledger: unreadable line ${JSON.stringify(line)}`);
  }
  return violations;
}

interface Racer {
  child: ChildProcess;
  /** The first answer line starting with one of `prefixes`, taken out of the queue. */
  answer(...prefixes: string[]): Promise<string>;
}

function startRacer(spool: string, ledger: string): Racer {
  const script = fileURLToPath(new URL('./torture-lock-racer.js', import.meta.url));
  const child = spawn(process.execPath, [script, spool, ledger], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: string[] = [];
  let wake = (): void => {};
  createInterface({ input: child.stdout! }).on('line', (line) => {
    lines.push(line);
    wake();
  });
  const answer = async (...prefixes: string[]): Promise<string> => {
    const deadline = Date.now() + ANSWER_TIMEOUT_MS;
    for (;;) {
      const i = lines.findIndex((l) => prefixes.some((p) => l.startsWith(p)));
      if (i >= 0) return lines.splice(i, 1)[0]!;
      if (Date.now() > deadline || child.exitCode !== null) return `no answer from pid ${child.pid}`;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 1000);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  };
  return { child, answer };
}

function deadPid(): number {
  return Number(spawnSync('sh', ['-c', 'echo $$']).stdout.toString().trim());
}

export async function runLockRace(options: LockRaceOptions): Promise<LockRaceReport> {
  const began = Date.now();
  const spoolDir = join(options.workDir, 'spool');
  mkdirSync(spoolDir, { recursive: true });
  const paths = openSpool(spoolDir);
  const ledger = join(options.workDir, 'ledger');
  writeFileSync(ledger, '');
  const racers = Array.from({ length: options.racers }, () => startRacer(paths.root, ledger));
  const winners: number[] = [];
  const problems: string[] = [];
  try {
    for (let trial = 0; trial < options.trials; trial++) {
      writeFileSync(paths.lockFile, staleLock(trial, racers[trial % racers.length]!.child.pid!, deadPid()));
      const at = Date.now() + (trial === 0 ? LEAD_MS.first : LEAD_MS.next);
      for (const r of racers) r.child.stdin!.write(`go ${trial} ${at}\n`);
      const answers = await Promise.all(racers.map((r) => r.answer(`won ${trial}`, `lost ${trial} `)));
      const won = racers.filter((_, i) => answers[i]!.startsWith('won'));
      for (const a of answers) if (!a.startsWith('won') && !a.startsWith(`lost ${trial} ERR_SPOOL_LOCKED`)) problems.push(`trial ${trial}: ${a}`);
      winners.push(won.length);
      for (const r of won) r.child.stdin!.write('release\n');
      await Promise.all(won.map((r) => r.answer(`released ${trial}`)));
      if ((trial + 1) % 50 === 0) options.progress?.(`${trial + 1} trials, winners so far: ${summarize(winners)}`);
    }
  } finally {
    for (const r of racers) r.child.kill('SIGKILL');
  }
  const violations = [...problems, ...judgeLockRace(winners, readFileSync(ledger, 'utf8'))];
  return { trials: options.trials, racers: options.racers, winners, violations, seconds: (Date.now() - began) / 1000 };
}

/** "200 × 1" or "198 × 1, 2 × 0": how many trials had how many winners. */
export function summarize(winners: number[]): string {
  const counts = new Map<number, number>();
  for (const n of winners) counts.set(n, (counts.get(n) ?? 0) + 1);
  return [...counts.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([n, times]) => `${times} trial(s) with ${n} winner(s)`)
    .join(', ');
}

export function formatLockRace(report: LockRaceReport): string {
  return [
    `lock race: ${report.trials} trials, ${report.racers} racing starters each, ${report.seconds.toFixed(1)} s`,
    `  winners per trial: ${summarize(report.winners)}`,
    `  stale locks left before the trials: dead pid, pid 1, a racer's own pid, garbage (in turn)`,
  ].join('\n');
}
