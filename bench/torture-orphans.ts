/**
 * The orphan torture (`npm run torture -- --orphans`): a real `wq serve`
 * (command mode, `--max-tasks N`) is SIGKILLed at random moments while its
 * tasks run, and restarted. Each task leaves its work to a background
 * grandchild in its process group; the server is killed together with its
 * task watchdog (as the OOM killer might), so its tasks outlive it and only
 * the next server's recovery can kill them. At its
 * start each run registers itself and counts the runs still alive (a run that
 * registers second always sees the first if they overlap), so the ledger
 * shows the most tasks ever alive at once, and whether a request ever ran
 * beside its own re-run. Random choices come from the seeded PRNG; waits are
 * polls with deadlines.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkQueueClient } from '../src/client.js';
import { watchdogsOf } from '../src/task-manager/watchdog.js';
import { Prng } from './torture-common.js';
import { pollUntil } from './torture-process.js';

export interface OrphanTortureOptions {
  seed: number;
  /** SIGKILLs of a serving server. */
  kills: number;
  maxTasks: number;
  /** Requests, all enqueued before the first server starts. */
  requests: number;
  /** A task works this long (uniform, in tenths of a second). */
  workTenths: [number, number];
  /** A server is killed this long (uniform, ms) after it says it started. */
  serveMs: [number, number];
  /** The real `bin/wq`. */
  wq: string;
  workDir: string;
  progress: (line: string) => void;
}

export interface OrphanTortureReport {
  seed: number;
  kills: number;
  requests: number;
  results: number;
  starts: number;
  maxTasks: number;
  /** The most task runs alive at once, as the runs counted them. */
  maxConcurrent: number;
  /** The most runs of one request alive at once (1 unless a re-run ran beside its orphan). */
  maxSameRequest: number;
  violations: string[];
}

/** The work, run in the background by each task: register, count who else is alive, work, deregister. */
const WORK_SH = `n=$1; t=$2; d=$3
set -- $(cat /proc/$$/stat); me="$$:\${22}"
echo "$n" > "$d/live/$me"
count=0; same=0
for f in "$d"/live/*; do
  k=\${f##*/}; pid=\${k%%:*}; st=\${k#*:}
  s=$(cat /proc/$pid/stat 2>/dev/null) || continue
  set -- $s
  if [ "$3" != Z ] && [ "\${22}" = "$st" ]; then
    count=$((count+1)); [ "$(cat "$f" 2>/dev/null)" = "$n" ] && same=$((same+1))
  fi
done
echo "start $n $me $count $same" >> "$d/ledger"
i=0; while [ $i -lt $t ] && [ -d "$d" ]; do sleep 0.1; i=$((i+1)); done
echo "end $n $me" >> "$d/ledger"
rm -f "$d/live/$me"
`;
/** The task command: its work outlives it (a grandchild in its process group). */
const TASK_SH = `sh "$3/work.sh" "$@" & wait\n`;

export async function runOrphanTorture(o: OrphanTortureOptions): Promise<OrphanTortureReport> {
  const prng = new Prng(o.seed);
  const spool = join(o.workDir, 'spool');
  mkdirSync(join(o.workDir, 'live'));
  writeFileSync(join(o.workDir, 'work.sh'), WORK_SH);
  writeFileSync(join(o.workDir, 'task.sh'), TASK_SH);
  writeFileSync(join(o.workDir, 'ledger'), '');
  const client = new WorkQueueClient({ spool });
  const violations: string[] = [];
  const servers: ChildProcess[] = [];
  try {
    const ids: string[] = [];
    for (let n = 0; n < o.requests; n++) {
      ids.push(await client.enqueue({ argv: ['sh', join(o.workDir, 'task.sh'), String(n), String(prng.int(...o.workTenths)), o.workDir] }));
    }
    for (let kill = 1; kill <= o.kills; kill++) {
      const serveMs = prng.int(...o.serveMs);
      const server = await startServer(o, spool, servers);
      await sleep(serveMs);
      // With its task watchdog, which would kill the tasks' groups at once: only the next server's recovery may.
      for (const dog of watchdogsOf(server.pid!)) {
        try {
          process.kill(dog, 'SIGKILL');
        } catch {
          // gone meanwhile
        }
      }
      server.kill('SIGKILL');
      await new Promise((resolve) => (server.exitCode !== null || server.signalCode !== null ? resolve(undefined) : server.once('exit', resolve)));
      const running = readdirSync(join(spool, 'running')).filter((n) => !n.includes('.')).length;
      o.progress(`server ${kill}: SIGKILLed after ${serveMs} ms with ${running} running; ${countLines(o.workDir, 'start ')} starts so far`);
    }
    const last = await startServer(o, spool, servers);
    const done = await pollUntil(() => readdirSync(join(spool, 'complete')).length >= o.requests, 30_000 + o.requests * 4_000, 50);
    if (!done) violations.push(`only ${readdirSync(join(spool, 'complete')).length} of ${o.requests} results after the last server's deadline`);
    const results = readdirSync(join(spool, 'complete')).length;
    last.kill('SIGTERM');
    await new Promise((resolve) => (last.exitCode !== null ? resolve(undefined) : last.once('exit', resolve)));
    const verdict = judgeOrphanLedger(readFileSync(join(o.workDir, 'ledger'), 'utf8'), o.maxTasks, o.requests);
    return { seed: o.seed, kills: o.kills, requests: o.requests, results, maxTasks: o.maxTasks, ...verdict, violations: [...violations, ...verdict.violations] };
  } finally {
    client.close();
    for (const server of servers) if (server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
  }
}

async function startServer(o: OrphanTortureOptions, spool: string, servers: ChildProcess[]): Promise<ChildProcess> {
  const child = spawn(process.execPath, [o.wq, 'serve', '--spool', spool, '--max-tasks', String(o.maxTasks), '--log-level', 'info'], { stdio: ['ignore', 'ignore', 'pipe'] });
  servers.push(child);
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  if (!(await pollUntil(() => log.includes('server started') || child.exitCode !== null, 20_000))) throw new Error('wq serve did not start within 20 s');
  if (child.exitCode !== null) throw new Error(`wq serve exited ${child.exitCode}: ${log}`);
  return child;
}

function countLines(dir: string, prefix: string): number {
  return readFileSync(join(dir, 'ledger'), 'utf8').split('\n').filter((l) => l.startsWith(prefix)).length;
}

/** The verdict on a ledger of `start <n> <pid:ticks> <alive> <aliveOfN>` and `end <n> <pid:ticks>` lines. */
export function judgeOrphanLedger(ledger: string, maxTasks: number, requests: number): { starts: number; maxConcurrent: number; maxSameRequest: number; violations: string[] } {
  const violations: string[] = [];
  let maxConcurrent = 0;
  let maxSameRequest = 0;
  const started = new Set<string>();
  const ended = new Set<string>();
  let starts = 0;
  for (const line of ledger.split('\n')) {
    const f = line.split(' ');
    if (f[0] === 'end') ended.add(f[1]!);
    if (f[0] !== 'start' || f.length !== 5) continue;
    starts++;
    started.add(f[1]!);
    const alive = Number(f[3]);
    const same = Number(f[4]);
    maxConcurrent = Math.max(maxConcurrent, alive);
    maxSameRequest = Math.max(maxSameRequest, same);
    if (alive > maxTasks) violations.push(`request ${f[1]} started with ${alive} tasks alive (--max-tasks ${maxTasks})`);
    if (same > 1) violations.push(`request ${f[1]} started while ${same - 1} earlier run(s) of it were still alive`);
  }
  for (let n = 0; n < requests; n++) if (!ended.has(String(n))) violations.push(`request ${n} never ran to its end`);
  return { starts, maxConcurrent, maxSameRequest, violations };
}

/** The run in a few lines, for people. */
export function formatOrphanSummary(r: OrphanTortureReport): string {
  return [
    `orphan torture: ${r.kills} server SIGKILLs with tasks running; ${r.requests} requests, ${r.results} results; ${r.starts} task starts (${r.starts - r.requests} re-runs)`,
    `most tasks alive at once: ${r.maxConcurrent} (--max-tasks ${r.maxTasks}); most runs of one request alive at once: ${r.maxSameRequest}`,
  ].join('\n');
}
