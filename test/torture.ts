/**
 * Crash torture, the short variant (the long one is `npm run torture`): the
 * harness of bench/torture-run.ts with 20 waiting clients and 5 server
 * SIGKILLs. Its processes run compiled JavaScript, so the test first compiles
 * src/ and bench/ (tsconfig.bench.json) into its own directory. Also the
 * verdict (bench/torture-check.ts) on plain data, so each check is shown to
 * catch what it is meant to catch.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { judge, type ClientRun, type TortureEvidence } from '../bench/torture-check.js';
import { plannedFailureMessage } from '../bench/torture-common.js';
import type * as TortureRun from '../bench/torture-run.js';
import type * as TortureOrphans from '../bench/torture-orphans.js';
import { judgeOrphanLedger } from '../bench/torture-orphans.js';
import { ROOT, WQ } from './fixtures/helpers.js';

/** The plan of the short run; `WQ_TORTURE_SEED` replays another one. */
const SEED = Number(process.env.WQ_TORTURE_SEED ?? 20261122);
const SHORT = { clients: 20, kills: 5, minKills: 5, maxSeconds: 40 };

t.test(`crash torture: ${SHORT.clients} waiting clients, ${SHORT.kills} server SIGKILLs, clients killed mid-wait and mid-enqueue`, async (t) => {
  const dir = t.testdir();
  const build = join(dir, 'build');
  const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.bench.json'), '--outDir', build], { encoding: 'utf8' });
  t.equal(tsc.status, 0, 'bench/ compiles', { output: tsc.stdout + tsc.stderr });
  if (tsc.status !== 0) return;
  const { runTorture, formatSummary, DEFAULT_TORTURE_OPTIONS } = (await import(pathToFileURL(join(build, 'bench', 'torture-run.js')).href)) as typeof TortureRun;
  const workDir = join(dir, 'work');
  mkdirSync(workDir);
  t.comment(`seed ${SEED}; replay: npm run torture -- --seed ${SEED} --clients ${SHORT.clients} --kills ${SHORT.kills} --min-kills ${SHORT.minKills}`);
  const progress: string[] = [];
  const options = { ...DEFAULT_TORTURE_OPTIONS, ...SHORT, seed: SEED, workDir, progress: (line: string) => void progress.push(line) };
  const report = await runTorture(options);
  t.comment(`${progress.join('\n')}\n${formatSummary(report, options)}`);
  t.ok(report.servingKills >= SHORT.kills, `at least ${SHORT.kills} servers were SIGKILLed while serving`);
  t.ok(report.figures.delivered > 0 && report.figures.backlogStartsChecked > 0, 'requests went through, and restarts had backlogs to check');
  t.equal(report.figures.rejected, 0, 'no server ever saw a half request');
  t.strictSame(report.violations, [], 'every request got exactly one result, FIFO held in each lifetime, and housekeeping left an empty spool');
});

t.test('a task outliving a SIGKILLed server never runs beside its re-run: 4 kills of `wq serve --max-tasks 2`', async (t) => {
  const dir = t.testdir();
  const build = join(dir, 'build');
  const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.bench.json'), '--outDir', build], { encoding: 'utf8' });
  t.equal(tsc.status, 0, 'bench/ compiles', { output: tsc.stdout + tsc.stderr });
  if (tsc.status !== 0) return;
  const { runOrphanTorture, formatOrphanSummary } = (await import(pathToFileURL(join(build, 'bench', 'torture-orphans.js')).href)) as typeof TortureOrphans;
  const workDir = join(dir, 'work');
  mkdirSync(workDir);
  const progress: string[] = [];
  const report = await runOrphanTorture({ seed: SEED, kills: 4, maxTasks: 2, requests: 10, workTenths: [5, 25], serveMs: [400, 2000], wq: WQ, workDir, progress: (line) => void progress.push(line) });
  t.comment(`${progress.join('\n')}\n${formatOrphanSummary(report)}`);
  t.equal(report.results, 10, 'every request got its result');
  t.ok(report.starts > 10, 'some requests ran again after a kill');
  t.ok(report.maxConcurrent <= 2, `never more than --max-tasks alive at once (${report.maxConcurrent})`);
  t.equal(report.maxSameRequest, 1, 'no request ever ran beside its own re-run');
  t.strictSame(report.violations, []);
});

t.test('the orphan verdict catches a re-run beside its orphan, and more tasks than --max-tasks', async (t) => {
  const clean = 'start 0 10:1 1 1\nstart 1 11:2 2 1\nend 1 11:2\nstart 0 12:3 1 1\nend 0 12:3\n';
  t.strictSame(judgeOrphanLedger(clean, 2, 2), { starts: 3, maxConcurrent: 2, maxSameRequest: 1, violations: [] });
  t.match(judgeOrphanLedger(clean.replace('start 0 12:3 1 1', 'start 0 12:3 2 2'), 2, 2).violations.join('\n'), /request 0 started while 1 earlier run\(s\) of it were still alive/);
  t.match(judgeOrphanLedger(clean.replace('start 1 11:2 2 1', 'start 1 11:2 3 1'), 2, 2).violations.join('\n'), /request 1 started with 3 tasks alive \(--max-tasks 2\)/);
  t.match(judgeOrphanLedger(clean.replace('end 0 12:3\n', ''), 2, 2).violations.join('\n'), /request 0 never ran to its end/);
});

// ---- the verdict, on plain data ------------------------------------------------

const A = '1795366421947895-000000000001';
const B = '1795366421947896-000000000002';
const C = '1795366421947897-000000000003';

const record = (r: object): string => `${JSON.stringify(r)}\n`;
const value = (id: string, c: number, s: number, lifetime: number) => ({ id, c, s, lifetime });
const emptySpool = (): Record<string, string[]> => ({ '.': ['format'], requested: [], pending: [], running: [], complete: [], aborting: [], tmp: [], logs: [] });

/**
 * A clean run: waiter 1 got A (ran in lifetimes 1 and 2: interrupted by a
 * kill) and B (a planned failure); waiter 2 was killed waiting for C, whose
 * result is left in complete/.
 */
function cleanEvidence(): TortureEvidence {
  const waiter1: ClientRun = {
    index: 1,
    kind: 'waiter',
    pid: 101,
    killed: false,
    exitCode: 0,
    log:
      record({ k: 'E', id: A, s: 1 }) +
      record({ k: 'R', id: A, s: 1, status: 'normal', value: value(A, 1, 1, 2) }) +
      record({ k: 'E', id: B, s: 2 }) +
      record({ k: 'R', id: B, s: 2, status: 'error', error: plannedFailureMessage(B, 2) }) +
      record({ k: 'D' }),
  };
  const waiter2: ClientRun = { index: 2, kind: 'waiter', pid: 102, killed: true, exitCode: null, log: record({ k: 'E', id: C, s: 1 }) + '{"k":"R","id' };
  return {
    ledger: `1 ${A} 1:1 whole\n2 ${A} 1:1 whole\n2 ${B} 1:2 whole\n2 ${C} 2:1 whole\n`,
    lifetimes: [
      { n: 1, backlog: [], end: 'killed-serving', interrupted: 1, publishedButRunning: [], audited: 3, torn: [] },
      { n: 2, backlog: [A, B, C], end: 'stopped', interrupted: 0, publishedButRunning: [], audited: 0, torn: [] },
    ],
    clients: [waiter1, waiter2],
    killedPids: new Set([102, 900]),
    before: { ...emptySpool(), '.': ['format', 'server.lock'], complete: [C], tmp: ['request.102.7'] },
    orphanResults: [{ id: C, status: 'normal', value: value(C, 2, 1, 2) }],
    temps: [{ name: 'request.102.7', size: 100, decodes: false }],
    after: emptySpool(),
    serverProblems: [],
  };
}

t.test('the verdict: a clean run has no violations, and counts re-runs, orphans and torn temp files', async (t) => {
  const { violations, figures } = judge(cleanEvidence());
  t.strictSame(violations, []);
  t.match(figures, { requests: 3, delivered: 2, starts: 4, rerunIds: 1, extraStarts: 1, plannedFailures: 1, orphanResults: 1, tornTemps: 1, backlogStartsChecked: 3 });
});

t.test('the verdict catches each broken guarantee', async (t) => {
  const cases: Array<[string, (e: TortureEvidence) => void, RegExp]> = [
    ['a result never delivered to a live waiter', (e) => (e.clients[0]!.log = e.clients[0]!.log.split('\n').slice(0, 1).join('\n') + '\n'), /result lost: client 1 never got the result of/],
    ['a result delivered twice', (e) => (e.clients[1]!.log += `\n${record({ k: 'R', id: A, s: 1, status: 'normal', value: value(A, 1, 1, 2) })}`), /result delivered twice/],
    ['another request\'s result', (e) => (e.clients[0]!.log = e.clients[0]!.log.replace(`"value":{"id":"${A}","c":1,"s":1`, `"value":{"id":"${A}","c":1,"s":9`)), /wrong result/],
    ['a result from a run the ledger does not have', (e) => (e.ledger = e.ledger.replace(`2 ${A}`, `3 ${A}`)), /ran in lifetime 2; the ledger has it in \[1,3\]/],
    ['starts out of FIFO order', (e) => (e.ledger = `1 ${A} 1:1 whole\n2 ${B} 1:2 whole\n2 ${A} 1:1 whole\n2 ${C} 2:1 whole\n`), /FIFO order broken: lifetime 2 started .*0002 while .*0001/],
    ['a start twice in one lifetime', (e) => (e.ledger += `2 ${A} 1:1 whole\n`), /started twice in one lifetime/],
    ['a half request processed', (e) => (e.ledger = e.ledger.replace(`2 ${C} 2:1 whole`, `2 ${C} 2:1 torn`)), /half request processed/],
    ['a half request in the spool', (e) => e.lifetimes[0]!.torn.push(`requested/${C}: request file is not valid msgpack`), /half request in the spool/],
    ['a second result after the first was claimed', (e) => e.orphanResults.push({ id: A, status: 'normal', value: value(A, 1, 1, 2) }), /second result/],
    ['a result left for a waiter that was not killed', (e) => (e.clients[1]!.killed = false), /result left for a live client/],
    ['a rejected request', (e) => e.serverProblems.push('2026-11-22T17:00:00.000Z warn rejected unreadable request id=x'), /server error: .*rejected unreadable request/],
    ['a temp file from a process that was not killed', (e) => e.temps.push({ name: 'result.555.1', size: 10 }), /tmp\/result\.555\.1 was left by pid 555/],
    ['a request left behind', (e) => e.before.pending!.push(B), /leftover: pending\//],
    ['what housekeeping should have removed', (e) => e.after.tmp!.push('request.102.7'), /not cleaned up by housekeeping: tmp\/request\.102\.7/],
  ];
  for (const [what, breakIt, expected] of cases) {
    const e = cleanEvidence();
    breakIt(e);
    t.match(judge(e).violations.join('\n'), expected, what);
  }
});
