/**
 * `npm run bench`: every figure in docs/benchmarks.md, measured in one run.
 * Scenarios run in separate processes (server and clients apart, as in use),
 * repeated and interleaved; the table shows medians and each row's ratio to the
 * raw file-call loop (the limit). `--quick` runs fewer requests and repeats;
 * `--only=REGEX` runs only the matching rows (plus the limit), without rewriting the docs.
 */
import { fork, spawn, spawnSync } from 'node:child_process';
import { closeSync, fsyncSync, mkdtempSync, openSync, readFileSync, readSync, renameSync, rmSync, unlinkSync, writeFileSync, writeSync, mkdirSync, constants } from 'node:fs';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WorkQueueClient } from '../src/client.js';
import { describeFileSystem } from '../src/spool/mount.js';
import type { ClientConfig } from './client-process.js';
import type { BullClientConfig } from './bullmq-client-process.js';
import type { BullWorkerConfig } from './bullmq-worker-process.js';
import { runBenchClients, startBenchServer, startWqServe, type BenchServer } from './processes.js';
import { startRedis, type RedisServer } from './redis-server.js';
import type { ServerConfig } from './server-process.js';
import { median, medianSummary, percentile, summarize, type LatencySummary } from './stats.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const ROOT = resolve(HERE, '..', '..');
const WQ = join(ROOT, 'bin', 'wq');
const QUICK = process.argv.includes('--quick');
/** `--only=REGEX`: run just the rows (and the "depth" / "cli" sections) whose name matches; docs are not rewritten. */
const ONLY = (() => {
  const arg = process.argv.find((a) => a.startsWith('--only='));
  return arg === undefined ? undefined : new RegExp(arg.slice('--only='.length), 'i');
})();
/** Extra Node flags for the server and client processes, e.g. WQ_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof". */
const NODE_ARGS = (process.env.WQ_BENCH_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
const selected = (name: string): boolean => ONLY === undefined || ONLY.test(name);
/** `--depths=N,N`: the depth section's queue depths, for investigation (docs are rewritten only with the defaults). */
const DEPTHS = (() => {
  const arg = process.argv.find((a) => a.startsWith('--depths='));
  return arg === undefined ? undefined : arg.slice('--depths='.length).split(',').map(Number);
})();
const REPEATS = QUICK ? 1 : 3;
const N = {
  sequential: QUICK ? 500 : 2000,
  concurrent: QUICK ? 2000 : 10000,
  raw: QUICK ? 5000 : 20000,
  rawDurable: QUICK ? 200 : 1000,
  ancestor: 3,
  depths: DEPTHS ?? (QUICK ? [2000, 10000] : [2000, 10000, 100000]),
  durable: QUICK ? 1000 : 5000,
  cli: QUICK ? 10 : 30,
  /** Round trips that spawn a process (command mode, and spawning `true` directly). */
  spawn: QUICK ? 200 : 1000,
};

/**
 * Untimed round trips before the timed ones of a sequential row. A server is a
 * daemon: after its first few thousand requests V8 has compiled its hot path
 * (and the client's) with its optimizing compiler, which until then competes
 * for the two cores. Measured: p99 3.5 ms after 50 untimed round trips, 1.2 ms
 * after 2,000; and with `node --trace-opt`, the client's wait path is still
 * being compiled after 2,000, no longer after 4,000 (docs/benchmarks.md). The
 * "fresh processes" row keeps the cold figure.
 */
const SEQUENTIAL_WARMUP = QUICK ? 500 : 4000;
const COLD_WARMUP = 200;
/**
 * Untimed round trips per client process before a concurrent row, run as the
 * timed ones are (as many at a time), for the same reason. Read from
 * WQ_BENCH_CONCURRENT_WARMUP to compare (docs/benchmarks.md).
 */
const CONCURRENT_WARMUP = (() => {
  const text = process.env.WQ_BENCH_CONCURRENT_WARMUP ?? '2000';
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new Error(`WQ_BENCH_CONCURRENT_WARMUP must be an integer >= 0, got ${JSON.stringify(text)}`);
  return n;
})();

interface Row {
  name: string;
  summary: LatencySummary;
  note?: string;
}

const work = mkdtempSync(join(tmpdir(), 'wq-bench-'));
let spoolCounter = 0;
const freshSpool = (): string => join(work, `spool-${++spoolCounter}`);

// ---- processes ---------------------------------------------------------------

function startServer(config: Partial<ServerConfig> & { spool: string }): Promise<BenchServer> {
  return startBenchServer({ manager: 'inproc', maxTasks: 64, watch: true, rescanIntervalMs: 2000, durable: false, ...config }, { nodeArgs: NODE_ARGS });
}

/** Runs client processes together and merges their latencies. */
async function runClients(configs: ClientConfig[]): Promise<LatencySummary> {
  const reports = await runBenchClients(configs, { nodeArgs: NODE_ARGS });
  const summary = summarize(reports.flatMap((r) => r.latenciesMs), Math.max(...reports.map((r) => r.wallMs)));
  return { ...summary, clientCpuUsPerRequest: (reports.reduce((sum, r) => sum + r.cpuMs, 0) * 1000) / summary.count };
}

const clientConfig = (spool: string, over: Partial<ClientConfig> = {}): ClientConfig => ({
  spool,
  count: N.sequential,
  concurrency: 1,
  warmup: COLD_WARMUP,
  watch: true,
  recheckIntervalMs: 1000,
  durable: false,
  ...over,
});

/** Splits `total` requests and `concurrency` loops over `processes` client processes. */
function split(spool: string, total: number, concurrency: number, processes: number, over: Partial<ClientConfig> = {}): ClientConfig[] {
  return Array.from({ length: processes }, (_, i) => {
    const share = (n: number) => Math.floor(n / processes) + (i < n % processes ? 1 : 0);
    return clientConfig(spool, { count: share(total), concurrency: share(concurrency), warmup: CONCURRENT_WARMUP, ...over });
  });
}

// ---- scenarios ---------------------------------------------------------------

/** The protocol's file calls alone, synchronous, in one loop: the limit. With `fsync`, every file and directory is fsynced at each step. */
function rawLoop(fsync = false): LatencySummary {
  const root = freshSpool();
  for (const d of ['requested', 'pending', 'running', 'complete', 'tmp']) mkdirSync(join(root, d), { recursive: true });
  const payload = Buffer.alloc(64, 1);
  const buffer = Buffer.alloc(4096);
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL;
  const dirFd = (d: string) => openSync(join(root, d), constants.O_RDONLY);
  const dirs = fsync ? Object.fromEntries(['requested', 'pending', 'running', 'complete', 'tmp'].map((d) => [d, dirFd(d)])) : {};
  const sync = (fd: number | undefined): void => {
    if (fsync && fd !== undefined) fsyncSync(fd);
  };
  const latencies: number[] = [];
  const count = fsync ? N.rawDurable : N.raw;
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    const id = String(i).padStart(16, '0');
    let fd = openSync(`${root}/requested/${id}`, flags, 0o644);
    writeSync(fd, payload);
    sync(fd);
    closeSync(fd);
    sync(dirs.requested);
    renameSync(`${root}/requested/${id}`, `${root}/pending/${id}`);
    sync(dirs.pending);
    renameSync(`${root}/pending/${id}`, `${root}/running/${id}`);
    sync(dirs.running);
    fd = openSync(`${root}/running/${id}`, constants.O_RDONLY);
    readSync(fd, buffer, 0, buffer.length, 0);
    closeSync(fd);
    fd = openSync(`${root}/tmp/${id}`, flags, 0o644);
    writeSync(fd, payload);
    sync(fd);
    closeSync(fd);
    renameSync(`${root}/tmp/${id}`, `${root}/complete/${id}`);
    sync(dirs.complete);
    fd = openSync(`${root}/complete/${id}`, constants.O_RDONLY);
    readSync(fd, buffer, 0, buffer.length, 0);
    closeSync(fd);
    unlinkSync(`${root}/complete/${id}`);
    unlinkSync(`${root}/running/${id}`);
    sync(dirs.running);
    latencies.push(performance.now() - t);
  }
  for (const fd of Object.values(dirs)) closeSync(fd);
  return summarize(latencies, performance.now() - t0);
}

async function withServer<T>(config: Partial<ServerConfig> & { spool: string }, run: () => Promise<T>): Promise<{ result: T; cpuMs: number }> {
  const server = await startServer(config);
  try {
    const result = await run();
    return { result, cpuMs: (await server.stop()).cpuMs };
  } catch (err) {
    await server.stop().catch(() => {});
    throw err;
  }
}

async function sequential(manager: 'inproc' | 'pool', extra: Partial<ServerConfig> = {}, warmup = SEQUENTIAL_WARMUP): Promise<LatencySummary> {
  const spool = freshSpool();
  const { result } = await withServer({ spool, manager, maxTasks: manager === 'pool' ? 1 : 64, ...extra }, () => runClients([clientConfig(spool, { warmup })]));
  return result;
}

async function concurrent(manager: 'inproc' | 'pool', processes: number, extra: Partial<ServerConfig> & { clientDurable?: boolean } = {}, total = N.concurrent): Promise<LatencySummary> {
  const spool = freshSpool();
  const { clientDurable, ...serverExtra } = extra;
  const { result } = await withServer({ spool, manager, maxTasks: manager === 'pool' ? 2 : 64, ...serverExtra }, () =>
    runClients(split(spool, total, 50, processes, { durable: clientDurable === true })),
  );
  return result;
}

/**
 * What users run: the real `wq serve` (bin/wq) at its defaults, with a
 * `--handler` that returns its request, or in plain command mode, where each
 * round trip runs `true`. `args` are extra options (e.g. `--max-tasks 4`).
 */
async function wqServe(mode: 'handler' | 'command', args: readonly string[], clients: (spool: string) => ClientConfig[]): Promise<LatencySummary> {
  const spool = freshSpool();
  const serveArgs = ['--spool', spool, ...args];
  if (mode === 'handler') {
    const handler = `${spool}.noop-handler.mjs`;
    writeFileSync(handler, 'export default (request) => request;\n');
    serveArgs.push('--handler', handler);
  }
  const server = await startWqServe(WQ, serveArgs, { nodeArgs: NODE_ARGS });
  try {
    return await runClients(clients(spool));
  } finally {
    await server.stop();
  }
}

/**
 * The process pool's hop alone, its floor: a message to a forked Node child
 * (the pool's serialization) and its answer, one at a time, with no spool.
 */
async function ipcRoundTrip(): Promise<LatencySummary> {
  const child = fork(join(HERE, 'ipc-child.js'), [], { serialization: 'advanced', stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const once = (n: number) =>
    new Promise<void>((resolve) => {
      child.once('message', () => resolve());
      child.send({ type: 'run', id: '1796672154069641-f329af1c3d34', request: n });
    });
  for (let i = 0; i < SEQUENTIAL_WARMUP; i++) await once(i);
  const latencies: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < N.sequential; i++) {
    const t = performance.now();
    await once(i);
    latencies.push(performance.now() - t);
  }
  const summary = summarize(latencies, performance.now() - t0);
  child.disconnect();
  return summary;
}

/** What command mode saves a user from: spawning `true` from Node and waiting for it to exit, one at a time. */
async function spawnTrue(): Promise<LatencySummary> {
  const once = () => new Promise<void>((resolve, reject) => spawn('true', { stdio: 'ignore' }).once('exit', () => resolve()).once('error', reject));
  for (let i = 0; i < COLD_WARMUP; i++) await once();
  const latencies: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < N.spawn; i++) {
    const t = performance.now();
    await once();
    latencies.push(performance.now() - t);
  }
  return summarize(latencies, performance.now() - t0);
}

/** The BullMQ rows, and the wq rows each is compared with. */
const BULL = {
  inlineSequential: 'BullMQ, inline processor, concurrency 1, sequential',
  sandboxedSequential: 'BullMQ, sandboxed processor, concurrency 1, sequential',
  inlineConcurrent: 'BullMQ, inline processor, concurrency 4, 50 clients in 1 process',
  sandboxedConcurrent: 'BullMQ, sandboxed processor, concurrency 4, 50 clients in 1 process',
};
const WQ_HANDLER = { sequential: 'wq serve --handler, sequential', concurrent: 'wq serve --handler --max-tasks 4, 50 clients in 1 process' };
/** wq on a queue on Redis: the same rows as BullMQ's, on the same redis-server. */
const WQ_REDIS = {
  inprocSequential: 'wq on Redis, embedded server, in-process manager, 1 slot, sequential',
  inprocConcurrent: 'wq on Redis, embedded server, in-process manager, 4 slots, 50 clients in 1 process',
  handlerSequential: 'wq on Redis, wq serve --queue --handler, sequential',
  handlerConcurrent: 'wq on Redis, wq serve --queue --handler --max-tasks 4, 50 clients in 1 process',
};
const needsRedis = (name: string): boolean => name.startsWith('BullMQ') || name.startsWith('wq on Redis');

const TRUE_REQUEST = { argv: ['true'] };

/** The private redis-server of the BullMQ rows (started once, when one of them is selected and redis-server is installed). */
let redis: RedisServer | undefined;
let bullQueues = 0;
/** BullMQ rows were asked for, but redis-server is not installed: the report says so. */
let bullSkipped = false;

/**
 * BullMQ used directly, as its users do: a Worker in another process with the
 * same no-op (inline, or a sandboxed processor file that BullMQ runs in child
 * processes), and a client process that adds each job and waits for it with
 * `waitUntilFinished`. `concurrency` is the worker's; `loops` the client's.
 */
async function bullmq(processor: 'inline' | 'sandboxed', concurrency: number, loops: number, count: number, warmup: number): Promise<LatencySummary> {
  if (redis === undefined) throw new Error('no redis-server');
  const queue = `bench-${++bullQueues}`;
  let processorPath = 'inline';
  if (processor === 'sandboxed') {
    processorPath = join(work, `${queue}.noop-processor.cjs`);
    writeFileSync(processorPath, 'module.exports = async (job) => job.data;\n');
  }
  const connection = { host: redis.host, port: redis.port };
  const worker: BullWorkerConfig = { ...connection, queue, concurrency, processor: processorPath };
  const server = await startBenchServer(worker, { nodeArgs: NODE_ARGS }, 'bullmq-worker-process.js');
  try {
    const client: BullClientConfig = { ...connection, queue, count, concurrency: loops, warmup };
    const reports = await runBenchClients([client], { nodeArgs: NODE_ARGS }, 'bullmq-client-process.js');
    const summary = summarize(reports.flatMap((r) => r.latenciesMs), Math.max(...reports.map((r) => r.wallMs)));
    return { ...summary, clientCpuUsPerRequest: (reports.reduce((sum, r) => sum + r.cpuMs, 0) * 1000) / summary.count };
  } finally {
    await server.stop();
  }
}

/**
 * wq on a queue on Redis (its own queue name on the bench's redis-server):
 * the embedded server with the in-process manager (what BullMQ's inline
 * processor is), or the real `wq serve --queue --handler` (a process pool, as
 * BullMQ's sandboxed processor is); clients are WorkQueueClients in their own process.
 */
async function wqOnRedis(kind: 'inproc' | 'handler', maxTasks: number, clients: (queue: string) => ClientConfig[]): Promise<LatencySummary> {
  if (redis === undefined) throw new Error('no redis-server');
  const queue = `redis://${redis.host}:${redis.port}/bench-wq-${++bullQueues}`;
  const spool = freshSpool(); // names the handler file only
  let server: BenchServer;
  if (kind === 'inproc') server = await startBenchServer({ spool, queue, manager: 'inproc', maxTasks, watch: true, rescanIntervalMs: 2000, durable: false }, { nodeArgs: NODE_ARGS });
  else {
    const handler = `${spool}.noop-handler.mjs`;
    writeFileSync(handler, 'export default (request) => request;\n');
    server = await startWqServe(WQ, ['--queue', queue, '--handler', handler, '--max-tasks', String(maxTasks)], { nodeArgs: NODE_ARGS });
  }
  try {
    return await runClients(clients(queue));
  } finally {
    await server.stop();
  }
}

async function ancestorLike(): Promise<LatencySummary> {
  const spool = freshSpool();
  const { result } = await withServer({ spool, manager: 'inproc', watch: false, rescanIntervalMs: 2000 }, () =>
    runClients([clientConfig(spool, { count: N.ancestor, warmup: 0, watch: false, recheckIntervalMs: 1000 })]),
  );
  return result;
}

interface DepthFigures {
  depth: number;
  enqueueFirstUs: number;
  enqueueLastUs: number;
  drainRps: number;
  cpuUsPerRequest: number;
  headToClientP50Ms: number;
  /** What creating (and removing) a file costs in this spool's running/, before the drain: CPU µs per file. */
  spoolCreateUs: number;
  /** The same in a fresh directory beside the spool, at the same moment. */
  besideCreateUs: number;
}

/**
 * CPU time (user + system) per file to create, write, close and remove 2,000
 * small files in `dir`. On this machine's ext4 the figure depends on where the
 * directory's files land: 20–30 µs in some directories, 200–600 µs in others,
 * side by side and at the same moment (docs/benchmarks.md). Every depth row
 * reports it for its own spool, since the server creates a file per request.
 */
function createCostUs(dir: string): number {
  mkdirSync(dir, { recursive: true });
  const payload = Buffer.alloc(64, 1);
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL;
  const count = 2000;
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < count; i++) {
    const path = join(dir, `.bench-probe-${i}`);
    const fd = openSync(path, flags, 0o644);
    writeSync(fd, payload);
    closeSync(fd);
    unlinkSync(path);
  }
  const cpu = process.cpuUsage(cpu0);
  return (cpu.user + cpu.system) / count;
}

async function depth(d: number): Promise<DepthFigures> {
  const spool = freshSpool();
  const client = new WorkQueueClient({ spool }); // the default 1 s re-check, as users run it
  const enqueueUs: number[] = [];
  const ids: string[] = [];
  for (let i = 0; i < d; i++) {
    const t = performance.now();
    ids.push(await client.enqueue(i));
    enqueueUs.push((performance.now() - t) * 1000);
  }
  const spoolCreateUs = createCostUs(join(spool, 'running'));
  const besideCreateUs = createCostUs(`${spool}-beside`);
  const window = Math.min(1000, Math.floor(d / 2));
  const headToClient: number[] = [];
  const { result: drainMs, cpuMs } = await withServer({ spool, manager: 'inproc', maxTasks: 4 }, async () => {
    const t0 = performance.now();
    await Promise.all(
      ids.map(async (id) => {
        const result = await client.waitForResult(id);
        headToClient.push(performance.timeOrigin + performance.now() - (result.startedAt ?? 0));
      }),
    );
    return performance.now() - t0;
  });
  client.close();
  return {
    depth: d,
    enqueueFirstUs: median(enqueueUs.slice(0, window)),
    enqueueLastUs: median(enqueueUs.slice(-window)),
    drainRps: (d / drainMs) * 1000,
    cpuUsPerRequest: (cpuMs * 1000) / d,
    headToClientP50Ms: percentile([...headToClient].sort((a, b) => a - b), 50),
    spoolCreateUs,
    besideCreateUs,
  };
}

/** Median of each depth figure across repeated runs. */
function medianDepth(depth: number, runs: DepthFigures[]): DepthFigures {
  const m = (field: Exclude<keyof DepthFigures, 'depth'>): number => median(runs.map((r) => r[field]));
  return {
    depth,
    enqueueFirstUs: m('enqueueFirstUs'),
    enqueueLastUs: m('enqueueLastUs'),
    drainRps: m('drainRps'),
    cpuUsPerRequest: m('cpuUsPerRequest'),
    headToClientP50Ms: m('headToClientP50Ms'),
    spoolCreateUs: m('spoolCreateUs'),
    besideCreateUs: m('besideCreateUs'),
  };
}

/**
 * Writes every dirty page out (sync(1)) before a section, so that the
 * write-back of the previous section (100,000 files in the depth rows) does
 * not land in this one's measurements. Measured after a 100k depth row: CLI
 * ratio 1.24/1.27/1.30/1.29 without, 1.13/1.19/1.21/1.19 with (interleaved;
 * WQ_BENCH_SETTLE=0 turns it off).
 */
const SETTLE = process.env.WQ_BENCH_SETTLE !== '0';
function settle(): void {
  spawnSync('sync', { stdio: 'ignore' });
}

/**
 * `wq enqueue --wait -- true` against a running server, over `node -e 0`,
 * interleaved; and, for scale, loading just the two libraries the command needs
 * (commander and msgpackr) from node_modules the usual way (no bundle, no code
 * cache).
 */
async function cliRatio(): Promise<{ nodeMs: number; wqMs: number; ratio: number; librariesMs: number; librariesRatio: number }> {
  const spool = freshSpool();
  const server = spawn(process.execPath, [WQ, 'serve', '--spool', spool], { stdio: ['ignore', 'ignore', 'pipe'] });
  await new Promise<void>((resolveStarted, reject) => {
    let err = '';
    server.stderr!.on('data', (chunk: Buffer) => {
      err += chunk.toString();
      if (err.includes('server started')) resolveStarted();
    });
    server.once('exit', () => reject(new Error(`wq serve exited: ${err}`)));
  });
  const time = (args: string[]): number => {
    const t = performance.now();
    const r = spawnSync(process.execPath, args, { stdio: 'ignore', env: { ...process.env, WQ_SPOOL: spool } });
    if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}`);
    return performance.now() - t;
  };
  const node: number[] = [];
  const wq: number[] = [];
  const libraries: number[] = [];
  // msgpackr's pure-JS build, as bundled into the CLI (its node.cjs would also look for a native addon).
  const loadLibraries = ['-e', `require(${JSON.stringify(join(ROOT, 'node_modules', 'commander'))}); require(${JSON.stringify(join(ROOT, 'node_modules', 'msgpackr', 'dist', 'index.js'))})`];
  for (let i = 0; i < 3; i++) time(['-e', '0']), time([WQ, 'enqueue', '--wait', '--', 'true']), time(loadLibraries); // warm the page cache
  for (let i = 0; i < N.cli; i++) {
    node.push(time(['-e', '0']));
    wq.push(time([WQ, 'enqueue', '--wait', '--', 'true']));
    libraries.push(time(loadLibraries));
  }
  server.kill('SIGTERM');
  await new Promise((r) => server.once('exit', r));
  const nodeMs = median(node);
  const wqMs = median(wq);
  const librariesMs = median(libraries);
  return { nodeMs, wqMs, ratio: wqMs / nodeMs, librariesMs, librariesRatio: librariesMs / nodeMs };
}

// ---- report ------------------------------------------------------------------

/**
 * The file system of the work directory: type, and for ext4 whether it has a
 * journal. ext4 without one (common for VM images) will not reuse an inode
 * freed in the last 60 s (360 s while its inode table block is dirty) and
 * checks every such inode at each file creation, so a queue that creates and
 * removes files quickly gets slower as it runs (docs/benchmarks.md).
 */
function describeWorkFileSystem(): { text: string; mountPoint: string; ext4NoJournal: boolean } {
  const info = describeFileSystem(work);
  if (info === undefined) return { text: 'unknown', mountPoint: '', ext4NoJournal: false };
  const journal = info.journal === undefined ? '' : info.journal ? ' with a journal' : ' without a journal';
  return { text: `${info.type}${journal}`, mountPoint: info.mountPoint, ext4NoJournal: info.type === 'ext4' && info.journal === false };
}

const workFileSystem = describeWorkFileSystem();

function machine(): string {
  return `${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${release()}, spool on ${workFileSystem.text}`;
}

const fmt = (n: number, digits = 2): string => (Number.isFinite(n) ? n.toFixed(n !== 0 && Math.abs(n) < 10 && digits === 0 ? 1 : digits) : '—');

async function main(): Promise<void> {
  const started = new Date();
  process.stderr.write(`bench: ${QUICK ? 'quick, ' : ''}${REPEATS} interleaved repeat(s); work dir ${work} on ${workFileSystem.text} (${workFileSystem.mountPoint})\n`);
  if (workFileSystem.ext4NoJournal) {
    process.stderr.write(
      'bench: warning: the work directory is on ext4 without a journal, which checks every inode freed in the last minutes at each file creation; figures drift as the run goes on. For figures that hold, set TMPDIR to a directory on a file system with a journal (docs/benchmarks.md).\n',
    );
  }
  const samples = new Map<string, LatencySummary[]>();
  const add = (name: string, s: LatencySummary): void => {
    samples.set(name, [...(samples.get(name) ?? []), s]);
    const cpu = s.clientCpuUsPerRequest === undefined ? '' : `, client CPU ${fmt(s.clientCpuUsPerRequest, 0)} µs/request`;
    process.stderr.write(`  ${name}: p50 ${fmt(s.p50Ms, 3)} ms, p99 ${fmt(s.p99Ms, 3)} ms, ${fmt(s.rps, 0)} req/s${cpu}\n`);
  };
  const scenarios: Array<[string, () => Promise<LatencySummary> | LatencySummary]> = [
    ['raw file calls, sync, one loop (the limit)', () => rawLoop()],
    ['raw file calls with fsync of file and directory at each step', () => rawLoop(true)],
    ['wq round trip, sequential, in-process manager', () => sequential('inproc')],
    [`wq round trip, sequential, in-process manager, fresh processes (${COLD_WARMUP} untimed)`, () => sequential('inproc', {}, COLD_WARMUP)],
    ['wq round trip, sequential, process pool', () => sequential('pool')],
    ['IPC round trip to a forked Node child, sequential (the process pool\'s hop alone)', () => ipcRoundTrip()],
    ['wq round trip, sequential, in-process, Prometheus exporter on', () => sequential('inproc', { metricsPort: 0 })],
    ['50 clients in 1 process, in-process manager', () => concurrent('inproc', 1)],
    ['50 clients in 8 processes, in-process manager', () => concurrent('inproc', 8)],
    ['50 clients in 1 process, process pool (2)', () => concurrent('pool', 1)],
    ['50 clients in 8 processes, process pool (2)', () => concurrent('pool', 8)],
    ['durable (group commit): 50 clients in 1 process', () => concurrent('inproc', 1, { durable: true, clientDurable: true }, N.durable)],
    ['durable (group commit): 50 clients in 8 processes', () => concurrent('inproc', 8, { durable: true, clientDurable: true }, N.durable)],
    // What users run, at defaults (--max-tasks 1): the real `wq serve`.
    [WQ_HANDLER.sequential, () => wqServe('handler', [], (spool) => [clientConfig(spool, { warmup: SEQUENTIAL_WARMUP })])],
    [WQ_HANDLER.concurrent, () => wqServe('handler', ['--max-tasks', '4'], (spool) => split(spool, N.concurrent, 50, 1))],
    ['wq serve (command mode), sequential: `true`', () => wqServe('command', [], (spool) => [clientConfig(spool, { count: N.spawn, warmup: COLD_WARMUP, request: TRUE_REQUEST })])],
    ['spawning `true` from Node and waiting for it, sequential', () => spawnTrue()],
    // BullMQ used directly, the same no-op: concurrency 1 against wq serve's default, 4 against --max-tasks 4.
    [BULL.inlineSequential, () => bullmq('inline', 1, 1, N.sequential, SEQUENTIAL_WARMUP)],
    [BULL.sandboxedSequential, () => bullmq('sandboxed', 1, 1, N.sequential, SEQUENTIAL_WARMUP)],
    [BULL.inlineConcurrent, () => bullmq('inline', 4, 50, N.concurrent, CONCURRENT_WARMUP)],
    [BULL.sandboxedConcurrent, () => bullmq('sandboxed', 4, 50, N.concurrent, CONCURRENT_WARMUP)],
    // wq on a queue on Redis, on the same redis-server, against those rows.
    [WQ_REDIS.inprocSequential, () => wqOnRedis('inproc', 1, (queue) => [clientConfig('', { queue, warmup: SEQUENTIAL_WARMUP })])],
    [WQ_REDIS.inprocConcurrent, () => wqOnRedis('inproc', 4, (queue) => split('', N.concurrent, 50, 1, { queue }))],
    [WQ_REDIS.handlerSequential, () => wqOnRedis('handler', 1, (queue) => [clientConfig('', { queue, warmup: SEQUENTIAL_WARMUP })])],
    [WQ_REDIS.handlerConcurrent, () => wqOnRedis('handler', 4, (queue) => split('', N.concurrent, 50, 1, { queue }))],
  ];
  const wantBull = scenarios.some(([name]) => needsRedis(name) && selected(name));
  if (wantBull) {
    redis = await startRedis();
    bullSkipped = redis === undefined;
    process.stderr.write(
      redis === undefined
        ? 'bench: redis-server is not installed, so the BullMQ and wq-on-Redis rows are skipped (install it with `apt-get install redis-server`).\n'
        : `bench: BullMQ and wq-on-Redis rows against redis-server ${redis.version} on ${redis.host}:${redis.port} (no persistence)\n`,
    );
  }
  const skipped = (name: string): boolean => needsRedis(name) && redis === undefined;
  try {
    for (let rep = 0; rep < REPEATS; rep++) {
      process.stderr.write(`repeat ${rep + 1}/${REPEATS}\n`);
      for (const [name, run] of scenarios) if ((selected(name) && !skipped(name)) || (rep === 0 && name.includes('the limit'))) add(name, await run());
    }
  } finally {
    await redis?.stop(); // also when a row fails: a redis-server left behind would hold the bench's output open
  }
  const ancestorName = 'ancestor-like: no watching, 2 s / 1 s polling';
  if (selected(ancestorName)) {
    process.stderr.write('ancestor-like polling\n');
    add(ancestorName, await ancestorLike());
  }
  const depths: DepthFigures[] = [];
  if (selected('depth')) {
    process.stderr.write('depth scaling\n');
    const runs = new Map<number, DepthFigures[]>();
    for (let rep = 0; rep < REPEATS; rep++) {
      for (const d of N.depths) {
        if (SETTLE) settle();
        const figures = await depth(d);
        runs.set(d, [...(runs.get(d) ?? []), figures]);
        process.stderr.write(`  depth ${d}: ${JSON.stringify(figures)}\n`);
      }
    }
    for (const [d, figures] of runs) depths.push(medianDepth(d, figures));
  }
  if (selected('cli') && SETTLE) settle();
  const cli = selected('cli') ? await cliRatio() : { nodeMs: NaN, wqMs: NaN, ratio: NaN, librariesMs: NaN, librariesRatio: NaN };
  process.stderr.write(`CLI ratio: ${JSON.stringify(cli)}\n`);

  const rows: Row[] = [...samples].map(([name, runs]) => ({ name, summary: medianSummary(runs) }));
  const limit = rows[0]!.summary;
  const table = [
    '| scenario | p50 ms | p99 ms | req/s | req/s ÷ limit |',
    '|---|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.name} | ${fmt(r.summary.p50Ms, 3)} | ${fmt(r.summary.p99Ms, 3)} | ${fmt(r.summary.rps, 0)} | ${fmt((r.summary.rps / limit.rps) * 100, 0)} % |`),
  ].join('\n');
  const depthTable = [
    '| pending at start | enqueue µs (first 1k) | enqueue µs (last 1k) | drain req/s | server CPU µs/request | start → client p50 ms | file create in the spool, µs | beside it, µs |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...depths.map(
      (d) =>
        `| ${d.depth} | ${fmt(d.enqueueFirstUs, 0)} | ${fmt(d.enqueueLastUs, 0)} | ${fmt(d.drainRps, 0)} | ${fmt(d.cpuUsPerRequest, 0)} | ${fmt(d.headToClientP50Ms, 3)} | ${fmt(d.spoolCreateUs, 0)} | ${fmt(d.besideCreateUs, 0)} |`,
    ),
  ].join('\n');
  const cliLine =
    `\`wq enqueue --wait -- true\` ${fmt(cli.wqMs, 1)} ms ÷ \`node -e 0\` ${fmt(cli.nodeMs, 1)} ms = **${fmt(cli.ratio, 2)}** ` +
    `(medians of ${N.cli} interleaved runs). For scale: loading commander and msgpackr from node_modules, with no code cache, takes ${fmt(cli.librariesMs, 1)} ms = ${fmt(cli.librariesRatio, 2)} × \`node -e 0\`.`;
  const command = rows.find((r) => r.name.startsWith('wq serve (command mode)'))?.summary;
  const spawned = rows.find((r) => r.name.startsWith('spawning `true`'))?.summary;
  const commandLine =
    command === undefined || spawned === undefined
      ? ''
      : `\n\nCommand mode: a round trip of \`true\` through \`wq serve\` ${fmt(command.p50Ms, 3)} ms ÷ spawning it from Node ${fmt(spawned.p50Ms, 3)} ms = **${fmt(command.p50Ms / spawned.p50Ms, 2)}** (p50).`;
  const tableWithRatios = table + commandLine + bullTable(rows) + redisTable(rows);
  process.stdout.write(`\n${tableWithRatios}\n\n${depthTable}\n\n${cliLine}\n`);
  if (!QUICK && ONLY === undefined && DEPTHS === undefined) writeReport(started, tableWithRatios, depthTable, cliLine);
  rmSync(work, { recursive: true, force: true });
}

/**
 * wq serve --handler against BullMQ used directly, at the same concurrency:
 * how many times faster wq is (BullMQ's latency ÷ wq's; wq's req/s ÷ BullMQ's).
 * Empty when the BullMQ rows did not run.
 */
function bullTable(rows: Row[]): string {
  const get = (name: string) => rows.find((r) => r.name === name)?.summary;
  const wqSeq = get(WQ_HANDLER.sequential);
  const wqCon = get(WQ_HANDLER.concurrent);
  const lines: string[] = [];
  const line = (what: string, wq: number | undefined, inline: number | undefined, sandboxed: number | undefined, faster: (wq: number, other: number) => number, digits: number) => {
    if (wq === undefined || (inline === undefined && sandboxed === undefined)) return;
    const ratio = (other: number | undefined) => (other === undefined ? '—' : `${fmt(faster(wq, other), 2)}×`);
    lines.push(`| ${what} | ${fmt(wq, digits)} | ${inline === undefined ? '—' : fmt(inline, digits)} | ${sandboxed === undefined ? '—' : fmt(sandboxed, digits)} | ${ratio(inline)} | ${ratio(sandboxed)} |`);
  };
  const latency = (wq: number, other: number) => other / wq;
  const rate = (wq: number, other: number) => wq / other;
  const iS = get(BULL.inlineSequential);
  const sS = get(BULL.sandboxedSequential);
  const iC = get(BULL.inlineConcurrent);
  const sC = get(BULL.sandboxedConcurrent);
  line('sequential, 1 slot: p50 ms', wqSeq?.p50Ms, iS?.p50Ms, sS?.p50Ms, latency, 3);
  line('sequential, 1 slot: p99 ms', wqSeq?.p99Ms, iS?.p99Ms, sS?.p99Ms, latency, 3);
  line('sequential, 1 slot: req/s', wqSeq?.rps, iS?.rps, sS?.rps, rate, 0);
  line('50 clients, 4 slots: req/s', wqCon?.rps, iC?.rps, sC?.rps, rate, 0);
  line('50 clients, 4 slots: p50 ms', wqCon?.p50Ms, iC?.p50Ms, sC?.p50Ms, latency, 3);
  if (lines.length === 0) return bullSkipped ? '\n\nThe BullMQ rows were skipped: `redis-server` is not installed (`apt-get install redis-server`).' : '';
  return [
    '',
    '',
    '`wq serve --handler` against BullMQ used directly (worker in another process, the same no-op, the same slots):',
    '',
    '| figure | wq serve --handler | BullMQ inline | BullMQ sandboxed | wq ÷ inline | wq ÷ sandboxed |',
    '|---|---:|---:|---:|---:|---:|',
    ...lines,
  ].join('\n');
}

/**
 * wq on Redis against BullMQ used directly on the same redis-server, at the
 * same concurrency: the in-process rows against BullMQ inline, wq serve
 * --handler against BullMQ sandboxed. wq ÷ BullMQ: p50 (lower is better) and
 * throughput (higher is better). Empty when those rows did not run.
 */
function redisTable(rows: Row[]): string {
  const get = (name: string) => rows.find((r) => r.name === name)?.summary;
  const pairs: Array<[string, string, string]> = [
    ['in-process, 1 slot, sequential', WQ_REDIS.inprocSequential, BULL.inlineSequential],
    ['in-process, 4 slots, 50 clients', WQ_REDIS.inprocConcurrent, BULL.inlineConcurrent],
    ['--handler, 1 slot, sequential', WQ_REDIS.handlerSequential, BULL.sandboxedSequential],
    ['--handler, 4 slots, 50 clients', WQ_REDIS.handlerConcurrent, BULL.sandboxedConcurrent],
  ];
  const lines: string[] = [];
  for (const [what, wqName, bullName] of pairs) {
    const wq = get(wqName);
    const bull = get(bullName);
    if (wq === undefined || bull === undefined) continue;
    lines.push(`| ${what} | ${fmt(wq.p50Ms, 3)} | ${fmt(bull.p50Ms, 3)} | ${fmt(wq.p50Ms / bull.p50Ms, 2)} | ${fmt(wq.rps, 0)} | ${fmt(bull.rps, 0)} | ${fmt(bull.rps / wq.rps, 2)} |`);
  }
  if (lines.length === 0) return '';
  return [
    '',
    '',
    'wq on Redis against BullMQ used directly, on the same redis-server (target: each ratio ≤ 1.2):',
    '',
    '| rows | wq p50 ms | BullMQ p50 ms | wq ÷ BullMQ (p50) | wq req/s | BullMQ req/s | BullMQ ÷ wq (req/s) |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...lines,
  ].join('\n');
}

function writeReport(started: Date, table: string, depthTable: string, cliLine: string): void {
  const path = join(ROOT, 'docs', 'benchmarks.md');
  const previous = (() => {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return '';
    }
  })();
  const notes = previous.includes('<!-- notes -->') ? previous.slice(previous.indexOf('<!-- notes -->')) : '<!-- notes -->\n';
  const text = `# Benchmarks

Measured by \`npm run bench\` (\`bench/run.ts\`), which rewrites the figures above the notes.

- **Date**: ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC
- **Machine**: ${machine()}
- **Node**: ${process.version}
- **Command**: \`npm run bench\`${workFileSystem.mountPoint !== '/' && process.env.TMPDIR ? ', with \`TMPDIR\` in a directory on that file system' : ''} (${REPEATS} interleaved repeats; medians shown)

Server and clients run in separate processes; the task is a no-op that returns its request.
"limit" is the protocol's file calls alone, synchronous, in one loop (no events, no encoding):
what the file system allows. The \`wq serve\` rows run the real \`bin/wq serve\` as users do, at
its defaults (one task at a time) unless the row says otherwise: with a \`--handler\` module that
returns its request, or in command mode, each request running \`true\`, beside the cost of
spawning \`true\` from Node directly.

## Round trip and throughput

${table}

## Depth scaling

${depthTable}

## CLI start-up

${cliLine}

${notes}`;
  writeFileSync(path, text);
  process.stderr.write(`wrote ${path}\n`);
}

await main();
