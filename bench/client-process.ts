/**
 * A benchmark client in its own process: waits for "go" on stdin (so several
 * clients start together), runs its round trips, prints one JSON line with the
 * latencies and the wall time.
 */
import { createInterface } from 'node:readline';
import { WorkQueueClient } from '../src/client.js';

export interface ClientConfig {
  spool: string;
  /** Round trips to time, shared by `concurrency` async loops. */
  count: number;
  concurrency: number;
  /** Untimed round trips first, `concurrency` at a time. */
  warmup: number;
  watch: boolean;
  recheckIntervalMs: number;
  durable: boolean;
  /** The request every round trip sends (a command server's `{ argv }`); by default a number, which the no-op task returns. */
  request?: unknown;
}

export interface ClientReport {
  latenciesMs: number[];
  wallMs: number;
  /** This process's CPU time (user + system) over the measured requests. */
  cpuMs: number;
}

const config = JSON.parse(process.argv[2]!) as ClientConfig;
const client = new WorkQueueClient({ spool: config.spool, watch: config.watch, recheckIntervalMs: config.recheckIntervalMs, durable: config.durable });
// The untimed round trips run the way the timed ones will (as many at a time), so that
// the paths that get compiled and optimized are the ones measured.
let warmed = 0;
await Promise.all(
  Array.from({ length: Math.min(config.concurrency, Math.max(config.warmup, 1)) }, async () => {
    while (warmed < config.warmup) {
      const n = -++warmed;
      await client.run(config.request ?? n);
    }
  }),
);
process.stdout.write('ready\n');
const lines = createInterface({ input: process.stdin });
await new Promise<void>((resolve) => lines.once('line', () => resolve()));
lines.close();

const latenciesMs: number[] = [];
let started = 0;
const t0 = performance.now();
const cpu0 = process.cpuUsage();
async function loop(): Promise<void> {
  while (started < config.count) {
    started++;
    const t = performance.now();
    await client.run(config.request ?? started);
    latenciesMs.push(performance.now() - t);
  }
}
await Promise.all(Array.from({ length: config.concurrency }, loop));
const cpu = process.cpuUsage(cpu0);
const report: ClientReport = { latenciesMs, wallMs: performance.now() - t0, cpuMs: (cpu.user + cpu.system) / 1000 };
process.stdout.write(`${JSON.stringify(report)}\n`);
client.close();
