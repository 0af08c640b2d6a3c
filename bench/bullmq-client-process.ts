/**
 * BullMQ's side of the comparison rows, as a user waits for a job: `add`, then
 * `waitUntilFinished` on a shared QueueEvents, `concurrency` async loops in one
 * process, the same warm-up and report as client-process.ts. Completed jobs are
 * kept (the last 1,000): removing each at once makes waitUntilFinished fail with
 * "Missing key" when the job ends before the wait starts (bullmq #801).
 */
import { createInterface } from 'node:readline';
import { Queue, QueueEvents } from 'bullmq';
import type { ClientReport } from './client-process.js';

export interface BullClientConfig {
  host: string;
  port: number;
  queue: string;
  count: number;
  concurrency: number;
  warmup: number;
}

const config = JSON.parse(process.argv[2]!) as BullClientConfig;
const connection = { host: config.host, port: config.port, maxRetriesPerRequest: null };
const queue = new Queue(config.queue, { connection });
const events = new QueueEvents(config.queue, { connection });
// Each waitUntilFinished listens on both for their closing: one listener per loop is expected.
queue.setMaxListeners(config.concurrency + 10);
events.setMaxListeners(config.concurrency + 10);
await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);

async function roundTrip(n: number): Promise<void> {
  const job = await queue.add('n', n, { removeOnComplete: { count: 1000 } });
  const value: unknown = await job.waitUntilFinished(events);
  if (value !== n) throw new Error(`job ${String(job.id)} returned ${JSON.stringify(value)}, expected ${n}`);
}

let warmed = 0;
await Promise.all(
  Array.from({ length: Math.min(config.concurrency, Math.max(config.warmup, 1)) }, async () => {
    while (warmed < config.warmup) await roundTrip(-++warmed);
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
    await roundTrip(started);
    latenciesMs.push(performance.now() - t);
  }
}
await Promise.all(Array.from({ length: config.concurrency }, loop));
const cpu = process.cpuUsage(cpu0);
const report: ClientReport = { latenciesMs, wallMs: performance.now() - t0, cpuMs: (cpu.user + cpu.system) / 1000 };
process.stdout.write(`${JSON.stringify(report)}\n`);
await Promise.all([queue.close(), events.close()]);
process.exit(0);
