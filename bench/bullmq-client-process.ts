/**
 * BullMQ's side of the comparison rows, as a user waits for a job: `add`, then
 * `waitUntilFinished` on a shared QueueEvents, `concurrency` async loops in one
 * process, the same warm-up and report as client-process.ts. Completed jobs are
 * kept until the end (the queue is then obliterated): removing them makes a
 * wait that starts after the job ended fail with "Missing key" or hang (bullmq
 * #801, #85). A wait still has a ttl, since the completed event can be missed
 * (the events stream is trimmed, delivery is best effort); then the job's
 * stored return value is read instead, and the report counts those.
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

/** How long a wait trusts the completed event before it reads the job instead. */
const WAIT_TTL_MS = 5000;
let missedEvents = 0;

async function roundTrip(n: number): Promise<void> {
  const job = await queue.add('n', n);
  const value: unknown = await job.waitUntilFinished(events, WAIT_TTL_MS).catch(async (err: unknown) => {
    missedEvents++;
    const stored = await queue.getJob(job.id!);
    if (stored?.finishedOn === undefined) throw err;
    return stored.returnvalue as unknown;
  });
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
if (missedEvents > 0) process.stderr.write(`  (BullMQ: ${missedEvents} of ${config.warmup + config.count} waits missed the completed event; their job was read after ${WAIT_TTL_MS / 1000} s)\n`);
process.stdout.write(`${JSON.stringify(report)}\n`);
await events.close();
await queue.obliterate({ force: true });
await queue.close();
process.exit(0);
