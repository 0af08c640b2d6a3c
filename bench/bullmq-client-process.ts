/**
 * BullMQ's side of the comparison rows, as a user waits for a job: `add`, then
 * `waitUntilFinished` on a shared QueueEvents, `concurrency` async loops in one
 * process, timed as client-process.ts times wq's (round-trips.ts). Completed
 * jobs are kept until the end (the queue is then obliterated): removing them
 * makes a wait that starts after the job ended fail with "Missing key" or hang
 * (bullmq #801, #85). A wait still has a ttl, since the completed event can be
 * missed (the events stream is trimmed, delivery is best effort); then the
 * job's stored return value is read instead, and the report counts those.
 */
import { Queue, QueueEvents } from 'bullmq';
import { bullConnection, type BullQueueAt } from './bullmq-queue.js';
import { timeRoundTrips, type RoundTripLoops } from './round-trips.js';

export interface BullClientConfig extends BullQueueAt, RoundTripLoops {}

const config = JSON.parse(process.argv[2]!) as BullClientConfig;
const connection = bullConnection(config);
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

const report = await timeRoundTrips(config, roundTrip);
if (missedEvents > 0) process.stderr.write(`  (BullMQ: ${missedEvents} of ${config.warmup + config.count} waits missed the completed event; their job was read after ${WAIT_TTL_MS / 1000} s)\n`);
process.stdout.write(`${JSON.stringify(report)}\n`);
await events.close();
await queue.obliterate({ force: true });
await queue.close();
process.exit(0);
