/**
 * The crash-torture run: waiting clients in their own processes keep the queue
 * busy while a server process is SIGKILLed at random moments and restarted;
 * some clients are SIGKILLed mid-wait, and short-lived enqueuers mid-enqueue.
 * Then every client stops cleanly, the queue drains, a server with short
 * housekeeping limits cleans up, and torture-check.ts judges the evidence.
 *
 * Every random choice (kill moments, victims, downtimes, clients' work) comes
 * from one seeded PRNG, drawn in a fixed order, so `--seed` replays the plan
 * (the operating system's timing still varies). Waiting for something to
 * happen is always a poll or an event with a deadline, never a fixed sleep.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { openSpool } from '../src/spool/layout.js';
import { judge, type ClientRun, type LeftoverResult, type LeftoverTemp, type LifetimeRecord, type TortureFigures } from './torture-check.js';
import { Prng, type TortureClientConfig, type TortureServerConfig } from './torture-common.js';
import { pollUntil, TortureProcess } from './torture-process.js';
import { auditRequests, backlogOf, listSpool, readLeftoverResult, readLeftoverTemp } from './torture-spool.js';

export interface TortureOptions {
  /** Seeds every random choice; printed so a failing run can be replayed. */
  seed: number;
  /** Waiting clients at all times (a killed one is replaced). */
  clients: number;
  /** The run stops after this many SIGKILLs of a serving server … */
  kills: number;
  /** … or after this long, whichever comes first. */
  maxSeconds: number;
  /** Fewer serving kills than this when the time runs out fails the run. */
  minKills: number;
  /** Tasks the server runs at once. */
  maxTasks: number;
  /** A serving server is killed this long (uniform, ms) after it says "ready". */
  serveMs: [number, number];
  /** Share of servers killed during start-up instead: within `startupKillMs` of their spawn. */
  startupKillRate: number;
  startupKillMs: number;
  /** No server runs for this long (uniform, ms) after a kill; clients keep enqueueing. */
  downtimeMs: [number, number];
  /** Chance, per server lifetime, that a random waiter is SIGKILLed at a random moment. */
  waiterKillRate: number;
  /** Chance, per server lifetime, that an enqueuer starts and is SIGKILLed mid-enqueue. */
  enqueuerRate: number;
  /** An enqueuer is killed this long (uniform, ms) after it starts enqueueing. */
  enqueuerKillMs: [number, number];
  /** Longest a task works (ms); each request draws its own. */
  maxWorkMs: number;
  /** Share of tasks that throw. */
  failRate: number;
  /** Run the server with `durable: true`. */
  durable: boolean;
  /** Log every transition (debug) in the servers' logs, kept in the work directory as server-<n>.log. */
  debugLog?: boolean;
  /** Where the spool, ledger and client logs go (must exist). */
  workDir: string;
  /** Progress lines (one per lifetime). */
  progress: (line: string) => void;
}

export const DEFAULT_TORTURE_OPTIONS: Omit<TortureOptions, 'seed' | 'workDir' | 'progress'> = {
  clients: 50,
  kills: 25,
  maxSeconds: 300,
  minKills: 20,
  maxTasks: 4,
  serveMs: [50, 2000],
  startupKillRate: 0.15,
  startupKillMs: 150,
  downtimeMs: [0, 400],
  waiterKillRate: 0.5,
  enqueuerRate: 0.4,
  enqueuerKillMs: [0, 80],
  maxWorkMs: 20,
  failRate: 0.05,
  durable: false,
};

export interface TortureReport {
  seed: number;
  durationMs: number;
  lifetimes: number;
  servingKills: number;
  startupKills: number;
  startFailures: number;
  waiterKills: number;
  waitersKilledMidWait: number;
  enqueuerKills: number;
  figures: TortureFigures;
  /** What housekeeping removed, from its log line. */
  housekeeping: string;
  violations: string[];
}

/** How long a server may take to say "ready", and clients to finish, before the run calls it a failure. */
const READY_TIMEOUT_MS = 20_000;
const DRAIN_TIMEOUT_MS = 60_000;
const HOUSEKEEPING_TIMEOUT_MS = 15_000;
/** A server that failed to start (a lock race) is retried after this long, until the deadline. */
const START_RETRY_MS = 500;
const START_FAILURE_LIMIT_MS = 45_000;
const ENQUEUER_PAD_BYTES = 768 * 1024;
const ENQUEUER_MAX_REQUESTS = 40;

export async function runTorture(o: TortureOptions): Promise<TortureReport> {
  const run = new TortureRun(o);
  try {
    return await run.run();
  } finally {
    await run.killAll();
  }
}

class TortureRun {
  readonly #o: TortureOptions;
  readonly #prng: Prng;
  readonly #spool: string;
  readonly #ledger: string;
  readonly #stopFile: string;
  readonly #clients = new Map<number, { proc: TortureProcess; kind: 'waiter' | 'enqueuer'; log: string }>();
  readonly #servers: TortureProcess[] = [];
  readonly #lifetimes: LifetimeRecord[] = [];
  readonly #violations: string[] = [];
  #nextClient = 1;
  #startFailures = 0;
  /** When the current run of failed server starts began. */
  #failingSince: number | undefined;
  #waiterKills = 0;
  #enqueuerKills = 0;

  constructor(o: TortureOptions) {
    this.#o = o;
    this.#prng = new Prng(o.seed);
    this.#spool = join(o.workDir, 'spool');
    this.#ledger = join(o.workDir, 'ledger');
    this.#stopFile = join(o.workDir, 'stop');
    writeFileSync(this.#ledger, '');
    openSpool(this.#spool);
  }

  async run(): Promise<TortureReport> {
    const t0 = Date.now();
    for (let i = 0; i < this.#o.clients; i++) this.#startClient('waiter', this.#prng.fork());
    const deadline = t0 + this.#o.maxSeconds * 1000;
    while (this.#count('killed-serving') < this.#o.kills && Date.now() < deadline) await this.#tortureLifetime();
    if (this.#count('killed-serving') < this.#o.minKills) {
      this.#violations.push(`run: only ${this.#count('killed-serving')} serving kills in ${this.#o.maxSeconds} s (at least ${this.#o.minKills} wanted)`);
    }
    const end = await this.#finish();
    this.#servers.forEach((s, i) => writeFileSync(join(this.#o.workDir, `server-${i + 1}.log`), s.stderr));
    const evidence = { ...end, ledger: readFileSync(this.#ledger, 'utf8'), lifetimes: this.#lifetimes, clients: this.#clientRuns(), killedPids: this.#killedPids() };
    // For a post-mortem of a failed run (the work directory is kept then).
    writeFileSync(join(this.#o.workDir, 'evidence.json'), JSON.stringify({ ...evidence, killedPids: [...evidence.killedPids], clients: evidence.clients.map(({ log: _log, ...c }) => c) }, null, 1));
    const verdict = judge(evidence);
    const waiterRuns = this.#clientRuns().filter((c) => c.kind === 'waiter' && c.killed);
    return {
      seed: this.#o.seed,
      durationMs: Date.now() - t0,
      lifetimes: this.#lifetimes.length,
      servingKills: this.#count('killed-serving'),
      startupKills: this.#count('killed-starting'),
      startFailures: this.#startFailures,
      waiterKills: this.#waiterKills,
      waitersKilledMidWait: waiterRuns.filter((c) => lastRecordKind(c.log) === 'E').length,
      enqueuerKills: this.#enqueuerKills,
      figures: verdict.figures,
      housekeeping: end.housekeeping,
      violations: [...this.#violations, ...verdict.violations],
    };
  }

  /** SIGKILLs every process still running (after a failure); each by its own pid. */
  async killAll(): Promise<void> {
    await Promise.all([...this.#servers, ...[...this.#clients.values()].map((c) => c.proc)].map((p) => p.kill()));
  }

  #count(end: LifetimeRecord['end']): number {
    return this.#lifetimes.filter((l) => l.end === end).length;
  }

  // ---- one lifetime ----------------------------------------------------------

  /** Starts a server, lets it serve (or not) for a random time, SIGKILLs it, audits the spool, waits a random downtime. */
  async #tortureLifetime(): Promise<void> {
    const p = this.#prng;
    // Every draw of this lifetime, in a fixed order, whatever happens next.
    const plan = {
      startupKill: p.chance(this.#o.startupKillRate),
      startupKillMs: p.int(0, this.#o.startupKillMs),
      serveMs: p.int(...this.#o.serveMs),
      waiterKill: p.chance(this.#o.waiterKillRate),
      waiterKillAt: p.next(),
      victim: p.next(),
      enqueuer: p.chance(this.#o.enqueuerRate),
      enqueuerAt: p.next(),
      enqueuerKillMs: p.int(...this.#o.enqueuerKillMs),
      waiterSeed: p.fork(),
      enqueuerSeed: p.fork(),
      downtimeMs: p.int(...this.#o.downtimeMs),
    };
    const { n, backlog, server } = this.#startServer();
    let end: LifetimeRecord['end'];
    let events: string[] = [];
    if (plan.startupKill) {
      await Promise.race([sleep(plan.startupKillMs), server.exited]);
      end = server.exit !== undefined ? 'failed' : server.said('ready') ? 'killed-serving' : 'killed-starting';
    } else if (!(await server.saysWithin('ready', READY_TIMEOUT_MS))) {
      end = server.exit === undefined ? 'killed-starting' : 'failed';
      if (server.exit === undefined) this.#violations.push(`server ${n} did not say "ready" within ${READY_TIMEOUT_MS} ms`);
    } else {
      const clientEvents = Promise.all([
        plan.waiterKill ? this.#killWaiterAt(plan.waiterKillAt * plan.serveMs, plan.victim, plan.waiterSeed) : undefined,
        plan.enqueuer ? this.#killEnqueuerAt(plan.enqueuerAt * plan.serveMs, plan.enqueuerKillMs, plan.enqueuerSeed) : undefined,
      ]);
      await Promise.race([sleep(plan.serveMs), server.exited]);
      end = server.exit === undefined ? 'killed-serving' : 'failed';
      events = (await clientEvents).filter((e): e is string => e !== undefined);
    }
    const exit = await server.kill();
    if (end === 'failed') this.#serverFailed(n, server, exit.code);
    else if (server.said('ready')) this.#failingSince = undefined;
    const running = readdirSync(join(this.#spool, 'running')).filter((name) => !name.endsWith('.result'));
    const complete = new Set(readdirSync(join(this.#spool, 'complete')));
    const audit = auditRequests(this.#spool);
    const publishedButRunning = running.filter((id) => complete.has(id));
    this.#lifetimes.push({ n, backlog, end, interrupted: running.length, publishedButRunning, ...audit });
    this.#o.progress(
      `lifetime ${n}: ${end}${end === 'killed-serving' && !plan.startupKill ? ` after ${plan.serveMs} ms` : ''}, ` +
        `backlog ${backlog.length}, ${running.length} interrupted${publishedButRunning.length > 0 ? ` (${publishedButRunning.length} with a published result)` : ''}${events.length > 0 ? `; ${events.join('; ')}` : ''}`,
    );
    await sleep(end === 'failed' ? START_RETRY_MS : plan.downtimeMs);
  }

  /** Spawns the next server, after listing what it must queue at its first tick. */
  #startServer(housekeeping?: TortureServerConfig['housekeeping']): { n: number; backlog: string[]; server: TortureProcess } {
    const n = this.#lifetimes.length + 1;
    const backlog = backlogOf(this.#spool);
    const config: TortureServerConfig = {
      spool: this.#spool,
      ledger: this.#ledger,
      lifetime: n,
      maxTasks: this.#o.maxTasks,
      durable: this.#o.durable,
      logLevel: this.#o.debugLog === true ? 'debug' : housekeeping === undefined ? 'warn' : 'info',
      ...(housekeeping === undefined ? {} : { housekeeping }),
    };
    const server = new TortureProcess('torture-server', config);
    this.#servers.push(server);
    return { n, backlog, server };
  }

  /** A server that exited on its own: a start that lost a lock race is retried; one that stopped while serving is a violation. */
  #serverFailed(n: number, server: TortureProcess, code: number | null): void {
    this.#startFailures++;
    const why = server.stderr.trim().split('\n').at(-1) ?? '';
    if (server.said('ready')) this.#violations.push(`server ${n} exited on its own while serving (exit ${String(code)}): ${why}`);
    else this.#o.progress(`lifetime ${n}: the server failed to start (exit ${String(code)}): ${why}`);
    this.#failingSince ??= Date.now();
    if (Date.now() - this.#failingSince > START_FAILURE_LIMIT_MS) throw new Error(`no server could start for ${START_FAILURE_LIMIT_MS} ms: ${why}`);
  }

  // ---- clients ----------------------------------------------------------------

  #startClient(kind: 'waiter' | 'enqueuer', seed: number): { index: number; proc: TortureProcess } {
    const index = this.#nextClient++;
    const log = join(this.#o.workDir, `client-${index}.log`);
    const config: TortureClientConfig = {
      spool: this.#spool,
      index,
      kind,
      log,
      seed,
      stopFile: this.#stopFile,
      durable: kind === 'enqueuer' && seed % 2 === 0, // half the enqueuers fsync: killed between write and publish more often
      padBytes: ENQUEUER_PAD_BYTES,
      maxRequests: ENQUEUER_MAX_REQUESTS,
      maxWorkMs: this.#o.maxWorkMs,
      failRate: this.#o.failRate,
    };
    writeFileSync(log, '');
    const proc = new TortureProcess('torture-client', config);
    this.#clients.set(index, { proc, kind, log });
    return { index, proc };
  }

  /** SIGKILLs a waiter (picked by `victim` in [0, 1)) after `delayMs`, and starts another in its place. */
  async #killWaiterAt(delayMs: number, victim: number, seed: number): Promise<string> {
    await sleep(delayMs);
    const live = [...this.#clients].filter(([, c]) => c.kind === 'waiter' && c.proc.exit === undefined);
    const [index, waiter] = live[Math.floor(victim * live.length)]!;
    await waiter.proc.kill();
    this.#waiterKills++;
    this.#startClient('waiter', seed);
    return `waiter ${index} killed (${lastRecordKind(readFileSync(waiter.log, 'utf8')) === 'E' ? 'mid-wait' : 'between requests'})`;
  }

  /** Starts an enqueuer after `delayMs` and SIGKILLs it `killMs` after it starts enqueueing. */
  async #killEnqueuerAt(delayMs: number, killMs: number, seed: number): Promise<string> {
    await sleep(delayMs);
    const { index, proc } = this.#startClient('enqueuer', seed);
    if (!(await proc.saysWithin('go', READY_TIMEOUT_MS))) this.#violations.push(`enqueuer ${index} did not start`);
    await sleep(killMs);
    await proc.kill();
    if (!proc.killed) return `enqueuer ${index} finished before its kill`;
    this.#enqueuerKills++;
    const enqueued = readFileSync(this.#clients.get(index)!.log, 'utf8').split('\n').filter((l) => l.startsWith('{"k":"E"')).length;
    return `enqueuer ${index} killed after ${killMs} ms (${enqueued} enqueued)`;
  }

  #clientRuns(): ClientRun[] {
    return [...this.#clients].map(([index, c]) => ({
      index,
      kind: c.kind,
      pid: c.proc.pid,
      killed: c.proc.killed,
      exitCode: c.proc.exit?.code ?? null,
      log: readFileSync(c.log, 'utf8'),
    }));
  }

  #killedPids(): Set<number> {
    return new Set([...this.#servers, ...[...this.#clients.values()].map((c) => c.proc)].filter((p) => p.killed).map((p) => p.pid));
  }

  // ---- the end ----------------------------------------------------------------

  /**
   * A last server without kills: clients finish their current request and
   * stop, the queue drains, the spool is inspected; then a server with short
   * housekeeping limits removes what killed processes left, and stops.
   */
  async #finish(): Promise<{ before: Record<string, string[]>; orphanResults: LeftoverResult[]; temps: LeftoverTemp[]; after: Record<string, string[]>; serverProblems: string[]; housekeeping: string }> {
    const last = await this.#startServing();
    writeFileSync(this.#stopFile, '');
    const clients = [...this.#clients.values()].map((c) => c.proc);
    if (!(await pollUntil(() => clients.every((p) => p.exit !== undefined), DRAIN_TIMEOUT_MS))) {
      this.#violations.push(`clients still running ${DRAIN_TIMEOUT_MS} ms after the stop: ${clients.filter((p) => p.exit === undefined).map((p) => p.pid).join(', ')}`);
    }
    const states = ['requested', 'pending', 'running'].map((d) => join(this.#spool, d));
    if (!(await pollUntil(() => states.every((d) => readdirSync(d).length === 0), DRAIN_TIMEOUT_MS))) {
      this.#violations.push(`the queue did not drain within ${DRAIN_TIMEOUT_MS} ms`);
    }
    const before = listSpool(this.#spool);
    const orphanResults = before.complete!.map((id) => readLeftoverResult(this.#spool, id));
    const temps = before.tmp!.map((name) => readLeftoverTemp(this.#spool, name));
    await this.#stop(last);

    const hk = await this.#startServing({ resultTtlMs: 200, leftoverMaxAgeMs: 200, housekeepingIntervalMs: 100, rescanIntervalMs: 100 });
    const cleaned = ['tmp', 'complete', 'logs'].map((d) => join(this.#spool, d));
    if (!(await pollUntil(() => cleaned.every((d) => readdirSync(d).length === 0), HOUSEKEEPING_TIMEOUT_MS))) {
      this.#violations.push(`housekeeping did not empty tmp/, complete/ and logs/ within ${HOUSEKEEPING_TIMEOUT_MS} ms`);
    }
    await this.#stop(hk);
    const after = listSpool(this.#spool);
    const serverProblems = this.#servers.flatMap((s) => s.stderr.split('\n').filter((l) => / (warn|error) /.test(l) || l.startsWith('torture server failed')));
    const housekeeping = hk.stderr.split('\n').filter((l) => / info housekeeping /.test(l)).map((l) => l.replace(/^.* info housekeeping /, '')).join('; ');
    return { before, orphanResults, temps, after, serverProblems, housekeeping };
  }

  /** Starts a server that is not to be killed; retries a start that failed (a lock race) until it serves. */
  async #startServing(housekeeping?: TortureServerConfig['housekeeping']): Promise<TortureProcess> {
    for (;;) {
      const { n, backlog, server } = this.#startServer(housekeeping);
      if (await server.saysWithin('ready', READY_TIMEOUT_MS)) {
        this.#failingSince = undefined;
        this.#lifetimes.push({ n, backlog, end: 'stopped', interrupted: 0, publishedButRunning: [], audited: 0, torn: [] });
        return server;
      }
      const exit = await server.kill();
      this.#lifetimes.push({ n, backlog, end: 'failed', interrupted: 0, publishedButRunning: [], audited: 0, torn: [] });
      this.#serverFailed(n, server, exit.code);
      await sleep(START_RETRY_MS);
    }
  }

  /** SIGTERM: a graceful stop, which must exit 0. */
  async #stop(server: TortureProcess): Promise<void> {
    const exit = await server.terminate();
    if (exit.code !== 0) this.#violations.push(`a server stopped with SIGTERM exited ${String(exit.code ?? exit.signal)}: ${server.stderr.trim().split('\n').at(-1)}`);
  }
}

/** The run in a few lines, for people. */
export function formatSummary(r: TortureReport, o: Pick<TortureOptions, 'clients' | 'maxTasks' | 'durable'>): string {
  const f = r.figures;
  return [
    `duration: ${(r.durationMs / 1000).toFixed(1)} s; ${o.clients} waiting clients; ${o.maxTasks} tasks at once${o.durable ? '; durable server' : ''}`,
    `server: ${r.lifetimes} lifetimes; ${r.servingKills} SIGKILLs while serving + ${r.startupKills} during start-up; ${r.startFailures} failed starts; ${f.interruptedAtKills} requests in running/ at a kill`,
    `clients: ${r.waiterKills} waiters SIGKILLed (${r.waitersKilledMidWait} mid-wait); ${r.enqueuerKills} enqueuers SIGKILLed mid-enqueue, leaving ${f.tempsLeft} temp files (${f.tornTemps} torn)`,
    `requests: ${f.requests}; ${f.delivered} results claimed by their waiter; ${f.orphanResults} left unclaimed by killed clients; ${f.claimedByDyingClient} claimed by a client as it died; ${f.secondResults} second results`,
    `starts: ${f.starts}; ${f.rerunIds} requests ran again after a kill (${f.extraStarts} extra starts, at-least-once); ${f.plannedFailures} planned task failures delivered as errors`,
    `FIFO: ${f.backlogStartsChecked} starts of queued backlogs checked in id order; ${f.lateArrivalInversions} late arrivals started after younger ids (allowed)`,
    `half requests: ${f.auditedRequestFiles} files in requested/, pending/, running/ decoded between lifetimes, ${f.tornRequestFiles} torn; ${f.rejected} rejected by a server; ${f.serverWarnings} other server warnings`,
    `housekeeping: ${r.housekeeping || 'nothing to remove'}`,
  ].join('\n');
}

/** The kind of a client log's last whole record ('E': it was waiting). */
function lastRecordKind(log: string): string | undefined {
  const lines = log.split('\n').filter((l) => l.startsWith('{') && l.endsWith('}'));
  return (JSON.parse(lines.at(-1) ?? '{}') as { k?: string }).k;
}
