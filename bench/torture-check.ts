/**
 * The crash-torture verdict, pure: given the server ledger, the clients' logs,
 * what each server lifetime found and left, and the spool at the end, list
 * every violation of the guarantees in docs/protocol.md and the figures of the
 * run. No file-system access: the harness gathers, this judges.
 */
import { plannedFailureLifetime, type ClientRecord, type TortureValue } from './torture-common.js';

export interface LifetimeRecord {
  n: number;
  /**
   * Ids queued when this server started (in requested/, pending/ or running/
   * without a result, listed before it was spawned, with no server running).
   * The server's first tick queues all of them, so they must start in id order
   * and nothing newer may start before one of them.
   */
  backlog: string[];
  /** How it ended: killed before or after it said "ready", stopped by SIGTERM, or failed on its own. */
  end: 'killed-starting' | 'killed-serving' | 'stopped' | 'failed';
  /** Requests left in running/ when it ended (they run again). */
  interrupted: number;
  /** Of those, the ones whose result was already in complete/: killed between publishing a result and removing its running/ entry. */
  publishedButRunning: string[];
  /** Request files in requested/, pending/, running/ decoded after it ended, and those that did not decode. */
  audited: number;
  torn: string[];
}

export interface ClientRun {
  index: number;
  kind: 'waiter' | 'enqueuer';
  pid: number;
  /** The harness SIGKILLed it. */
  killed: boolean;
  exitCode: number | null;
  /** Its log file's text. */
  log: string;
}

export interface LeftoverResult {
  id: string;
  status?: string;
  value?: TortureValue;
  error?: string;
  /** Why it could not be decoded. */
  unreadable?: string;
}

export interface LeftoverTemp {
  name: string;
  size: number;
  /** For `request.*` temps: whether the bytes decode as a whole request. */
  decodes?: boolean;
}

export interface TortureEvidence {
  ledger: string;
  lifetimes: LifetimeRecord[];
  clients: ClientRun[];
  /** Pids the harness SIGKILLed (servers and clients): the only ones allowed to leave temp files. */
  killedPids: ReadonlySet<number>;
  /** After clients stopped and the queue drained, the last server still running: every directory's names. */
  before: Record<string, string[]>;
  orphanResults: LeftoverResult[];
  temps: LeftoverTemp[];
  /** After a housekeeping server with short limits ran and stopped. */
  after: Record<string, string[]>;
  /** warn and error lines of every server's stderr. */
  serverProblems: string[];
}

export interface TortureFigures {
  requests: number;
  enqueuedLogged: number;
  delivered: number;
  starts: number;
  rerunIds: number;
  extraStarts: number;
  plannedFailures: number;
  interruptedAtKills: number;
  backlogStartsChecked: number;
  lateArrivalInversions: number;
  orphanResults: number;
  claimedByDyingClient: number;
  tempsLeft: number;
  tornTemps: number;
  auditedRequestFiles: number;
  tornRequestFiles: number;
  /** Results left in complete/ for a request whose waiter had already claimed one (a re-run after the claim). */
  secondResults: number;
  rejected: number;
  /** Other warn lines of the servers (the watcher missed entries, …): not violations, but worth a look. */
  serverWarnings: number;
}

export interface TortureVerdict {
  violations: string[];
  figures: TortureFigures;
}

const STATE_DIRS = ['requested', 'pending', 'running', 'complete', 'aborting', 'tmp', 'logs'] as const;
const TEMP_NAME = /^(request|result|abort|lock|state)\.(\d+)\.(\d+)$/;
/** Each kind of violation is listed this many times at most, then counted. */
const MAX_LISTED = 10;

interface Start {
  lifetime: number;
  id: string;
  owner: string;
  whole: boolean;
}

/** Who claimed a result, and the lifetime whose run produced it (0 for an error result, which does not say). */
interface Delivery {
  client: number;
  lifetime: number;
}

class Violations {
  readonly list: string[] = [];
  readonly #counts = new Map<string, number>();

  add(kind: string, message: string): void {
    const n = (this.#counts.get(kind) ?? 0) + 1;
    this.#counts.set(kind, n);
    if (n <= MAX_LISTED) this.list.push(`${kind}: ${message}`);
  }

  finish(): string[] {
    for (const [kind, n] of this.#counts) if (n > MAX_LISTED) this.list.push(`${kind}: … ${n - MAX_LISTED} more`);
    return this.list;
  }
}

export function judge(e: TortureEvidence): TortureVerdict {
  const v = new Violations();
  const starts = parseLedger(e.ledger, v);
  const lifetimesOf = new Map<string, number[]>();
  for (const s of starts) lifetimesOf.set(s.id, [...(lifetimesOf.get(s.id) ?? []), s.lifetime]);
  checkStarts(starts, v);
  const fifo = checkFifo(starts, e.lifetimes, v);
  for (const l of e.lifetimes) for (const id of l.torn) v.add('half request in the spool', `${id}, after lifetime ${l.n}`);

  const clients = new Map(e.clients.map((c) => [c.index, c]));
  const logs = e.clients.map((c) => ({ client: c, records: parseClientLog(c, v) }));
  const delivered = new Map<string, Delivery>();
  const enqueued = new Map<string, number>();
  const dyingClaims = new Set<string>();
  let plannedFailures = 0;
  for (const { client, records } of logs) {
    plannedFailures += checkClient(client, records, lifetimesOf, delivered, enqueued, v);
    const last = records.at(-1);
    if (client.killed && last?.k === 'E') dyingClaims.add(last.id);
  }

  const orphans = new Map(e.orphanResults.map((r) => [r.id, r]));
  const ownerIndex = new Map(starts.map((s) => [s.id, Number(s.owner.split(':')[0])]));
  for (const r of e.orphanResults) checkOrphan(r, lifetimesOf, delivered, clients.get(ownerIndex.get(r.id) ?? -1), e.lifetimes, v);
  let claimedByDying = 0;
  for (const id of new Set([...lifetimesOf.keys(), ...enqueued.keys()])) {
    if (!lifetimesOf.has(id)) v.add('never started', `${id} was enqueued (client ${enqueued.get(id)}) but never started`);
    if (delivered.has(id) || orphans.has(id)) continue;
    // A killed waiter may have claimed its result and died before logging it.
    if (dyingClaims.has(id)) claimedByDying++;
    else v.add('result lost', `${id} (${ownerOf(starts, id) ?? `client ${enqueued.get(id)}`}) was neither delivered nor left in complete/`);
  }

  checkSpoolBefore(e.before, v);
  const tornTemps = checkTemps(e.temps, e.killedPids, v);
  checkSpoolAfter(e.after, v);
  const rejected = e.serverProblems.filter((line) => line.includes('rejected unreadable request')).length;
  for (const line of e.serverProblems) if (/ error /.test(line) || line.includes('rejected unreadable request')) v.add('server error', line.trim());

  const rerunIds = [...lifetimesOf.values()].filter((l) => l.length > 1).length;
  return {
    violations: v.finish(),
    figures: {
      requests: new Set([...lifetimesOf.keys(), ...enqueued.keys()]).size,
      enqueuedLogged: enqueued.size,
      delivered: delivered.size,
      starts: starts.length,
      rerunIds,
      extraStarts: starts.length - lifetimesOf.size,
      plannedFailures,
      interruptedAtKills: e.lifetimes.reduce((n, l) => n + l.interrupted, 0),
      backlogStartsChecked: fifo.checked,
      lateArrivalInversions: fifo.inversions,
      orphanResults: e.orphanResults.filter((r) => !delivered.has(r.id)).length,
      secondResults: e.orphanResults.filter((r) => delivered.has(r.id)).length,
      claimedByDyingClient: claimedByDying,
      tempsLeft: e.temps.length,
      tornTemps,
      auditedRequestFiles: e.lifetimes.reduce((n, l) => n + l.audited, 0),
      tornRequestFiles: e.lifetimes.reduce((n, l) => n + l.torn.length, 0),
      rejected,
      serverWarnings: e.serverProblems.filter((line) => / warn /.test(line) && !line.includes('rejected unreadable request')).length,
    },
  };
}

function parseLedger(text: string, v: Violations): Start[] {
  const starts: Start[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const m = /^(\d+) (\S+) (\S+) (whole|torn)$/.exec(line);
    if (m === null) {
      v.add('unparseable ledger line', JSON.stringify(line));
      continue;
    }
    starts.push({ lifetime: Number(m[1]), id: m[2]!, owner: m[3]!, whole: m[4] === 'whole' });
  }
  return starts;
}

function ownerOf(starts: Start[], id: string): string | undefined {
  const s = starts.find((x) => x.id === id);
  return s === undefined ? undefined : `client:seq ${s.owner}`;
}

/** No half request ever reaches the handler, and no request starts twice in one lifetime. */
function checkStarts(starts: Start[], v: Violations): void {
  const seen = new Set<string>();
  for (const s of starts) {
    if (!s.whole) v.add('half request processed', `${s.id} in lifetime ${s.lifetime}`);
    const key = `${s.lifetime} ${s.id}`;
    if (seen.has(key)) v.add('started twice in one lifetime', `${s.id} in lifetime ${s.lifetime}`);
    seen.add(key);
  }
}

/**
 * FIFO within each lifetime. Sound check: a request of the backlog (queued at
 * the first tick) must start before anything younger, so every start is <= the
 * oldest backlog id not started yet. Requests that arrive while the server runs
 * may legitimately start after younger ones that were already queued (their id
 * is taken before they are published); those inversions are only counted.
 */
function checkFifo(starts: Start[], lifetimes: LifetimeRecord[], v: Violations): { checked: number; inversions: number } {
  let checked = 0;
  let inversions = 0;
  for (const l of lifetimes) {
    const backlog = [...l.backlog].sort();
    const inBacklog = new Set(backlog);
    const started = new Set<string>();
    let head = 0;
    let newest = '';
    for (const s of starts) {
      if (s.lifetime !== l.n) continue;
      started.add(s.id);
      while (head < backlog.length && started.has(backlog[head]!)) head++;
      if (head < backlog.length && backlog[head]! < s.id) {
        v.add('FIFO order broken', `lifetime ${l.n} started ${s.id} while ${backlog[head]}, queued since the server started, had not started`);
      }
      if (inBacklog.has(s.id)) checked++;
      if (s.id < newest) inversions++;
      else newest = s.id;
    }
  }
  return { checked, inversions };
}

function parseClientLog(c: ClientRun, v: Violations): ClientRecord[] {
  const lines = c.log.split('\n');
  const records: ClientRecord[] = [];
  lines.forEach((line, i) => {
    if (line === '') return;
    try {
      records.push(JSON.parse(line) as ClientRecord);
    } catch {
      // SIGKILL can cut the last line short; anywhere else it is a bug in the harness.
      const last = lines.slice(i + 1).every((rest) => rest === '');
      if (!(c.killed && last)) v.add('unparseable client log line', `client ${c.index}: ${JSON.stringify(line)}`);
    }
  });
  return records;
}

/**
 * One client's records: every result it claimed is its own request's, from a
 * real start, delivered once; a client that was not killed got a result for
 * every request and stopped cleanly. Returns its planned failures.
 */
function checkClient(
  c: ClientRun,
  records: ClientRecord[],
  lifetimesOf: Map<string, number[]>,
  delivered: Map<string, Delivery>,
  enqueued: Map<string, number>,
  v: Violations,
): number {
  let failures = 0;
  let open: { id: string; s: number } | undefined;
  for (const r of records) {
    if (r.k === 'E') {
      if (enqueued.has(r.id)) v.add('id given twice', `${r.id} to clients ${enqueued.get(r.id)} and ${c.index}`);
      enqueued.set(r.id, c.index);
      if (c.kind === 'waiter' && open !== undefined) v.add('harness', `client ${c.index} enqueued before its previous result`);
      if (c.kind === 'waiter') open = { id: r.id, s: r.s };
    } else if (r.k === 'R') {
      if (open?.id !== r.id) v.add('result for a request not waited for', `client ${c.index} got ${r.id}`);
      open = undefined;
      if (delivered.has(r.id)) v.add('result delivered twice', `${r.id} to clients ${delivered.get(r.id)!.client} and ${c.index}`);
      const origin = resultOrigin(r.id, r, lifetimesOf, { c: c.index, s: r.s });
      if (typeof origin === 'string') v.add('wrong result', `client ${c.index}, seq ${r.s}: ${origin}`);
      delivered.set(r.id, { client: c.index, lifetime: typeof origin === 'number' ? origin : 0 });
      if (r.status === 'error') failures++;
    } else if (r.k === 'X') {
      open = undefined;
      v.add('wait failed', `client ${c.index}: ${r.id}: ${r.code ?? ''} ${r.error}`);
    }
  }
  if (!c.killed) {
    if (records.at(-1)?.k !== 'D' || c.exitCode !== 0) v.add('client did not finish', `client ${c.index} (${c.kind}) exit ${String(c.exitCode)}, last record ${JSON.stringify(records.at(-1))}`);
    if (open !== undefined) v.add('result lost', `client ${c.index} never got the result of ${open.id}`);
  }
  return failures;
}

/**
 * The lifetime whose run produced a result, or what is wrong with it: a result
 * must be our handler's answer (a value, or a planned failure) for this very
 * request (and client and seq, when known), from a run the ledger recorded.
 */
function resultOrigin(
  id: string,
  r: { status?: string; value?: TortureValue; error?: string },
  lifetimesOf: Map<string, number[]>,
  owner?: { c: number; s: number },
): number | string {
  let lifetime: number | undefined;
  if (r.status === 'normal') {
    const ok = r.value?.id === id && (owner === undefined || (r.value.c === owner.c && r.value.s === owner.s));
    if (!ok) return `${id} got the value ${JSON.stringify(r.value)}`;
    lifetime = r.value!.lifetime;
  } else if (r.status === 'error') {
    lifetime = plannedFailureLifetime(id, r.error);
    if (lifetime === undefined) return `${id} got the error ${JSON.stringify(r.error)}`;
  } else {
    return `${id} got status ${String(r.status)}${r.error === undefined ? '' : ` (${r.error})`}`;
  }
  const runs = lifetimesOf.get(id) ?? [];
  if (!runs.includes(lifetime)) return `${id}'s result says it ran in lifetime ${lifetime}; the ledger has it in ${JSON.stringify(runs)}`;
  return lifetime;
}

/** A result nobody claimed: it must be whole, from a real start, not a second result, and belong to a client that died. */
function checkOrphan(
  r: LeftoverResult,
  lifetimesOf: Map<string, number[]>,
  delivered: Map<string, Delivery>,
  owner: ClientRun | undefined,
  lifetimes: LifetimeRecord[],
  v: Violations,
): void {
  if (r.unreadable !== undefined) return v.add('unreadable result', `complete/${r.id}: ${r.unreadable}`);
  const claimed = delivered.get(r.id);
  if (claimed !== undefined) {
    const requeuedBy = lifetimes.find((l) => l.n > claimed.lifetime && l.backlog.includes(r.id));
    const why =
      requeuedBy === undefined
        ? 'it ran again after its first result was claimed'
        : `server ${claimed.lifetime} published that result and was killed before removing running/${r.id}; the client claimed it, ` +
          `server ${requeuedBy.n} found running/${r.id} without a result at its start and ran it again (planRecovery cannot tell a claimed result from none)`;
    return v.add('second result', `complete/${r.id} is left although client ${claimed.client} claimed the result of its run in lifetime ${claimed.lifetime} (runs in lifetimes ${JSON.stringify(lifetimesOf.get(r.id))}): ${why}`);
  }
  const origin = resultOrigin(r.id, r, lifetimesOf);
  if (typeof origin === 'string') return v.add('wrong result', `complete/${r.id}: ${origin}`);
  // Enqueuers never wait, so all their results are left; a waiter's only if it was killed.
  if (owner === undefined || (owner.kind === 'waiter' && !owner.killed)) {
    v.add('result left for a live client', `complete/${r.id} belongs to ${owner === undefined ? 'no known client' : `waiter ${owner.index}, which was not killed`}`);
  }
}

/** Once everything is claimed: no request in any state, nothing in aborting/ or logs/, no stray names at the root. */
function checkSpoolBefore(dirs: Record<string, string[]>, v: Violations): void {
  for (const dir of ['requested', 'pending', 'running', 'aborting', 'logs']) {
    for (const name of dirs[dir] ?? []) v.add('leftover', `${dir}/${name} after every client stopped`);
  }
  for (const name of dirs['.'] ?? []) {
    // (A killed server leaves its lock and its server.state; the next one takes both over.)
    if (name === 'format' || name === 'server.lock' || name === 'server.state' || (STATE_DIRS as readonly string[]).includes(name)) continue;
    v.add('leftover', `${name} at the spool's root`);
  }
}

/** Temp files may only be left by processes that were killed (the protocol's temp names; housekeeping removes them). */
function checkTemps(temps: LeftoverTemp[], killedPids: ReadonlySet<number>, v: Violations): number {
  let torn = 0;
  for (const t of temps) {
    const m = TEMP_NAME.exec(t.name);
    if (m === null) v.add('leftover', `tmp/${t.name} is not a documented temp name`);
    else if (!killedPids.has(Number(m[2]))) v.add('leftover', `tmp/${t.name} was left by pid ${m[2]}, which was not killed`);
    if (t.decodes === false) torn++;
  }
  return torn;
}

/** After housekeeping with short limits and a clean stop: an empty spool. */
function checkSpoolAfter(dirs: Record<string, string[]>, v: Violations): void {
  for (const dir of STATE_DIRS) for (const name of dirs[dir] ?? []) v.add('not cleaned up by housekeeping', `${dir}/${name}`);
  for (const name of dirs['.'] ?? []) {
    if (name === 'format' || (STATE_DIRS as readonly string[]).includes(name)) continue;
    v.add('not cleaned up by housekeeping', `${name} at the spool's root`);
  }
}
