/**
 * BullMQ's side of the comparison rows: a Worker in its own process (as a wq
 * server runs in its own), with the no-op processor inline (a function in this
 * process) or sandboxed (a file BullMQ runs in child processes). Prints "ready"
 * once connected; on SIGTERM closes and prints its CPU time as JSON.
 */
import { Worker } from 'bullmq';
import { bullConnection, type BullQueueAt } from './bullmq-queue.js';

export interface BullWorkerConfig extends BullQueueAt {
  concurrency: number;
  /** 'inline', or the path of a processor file for a sandboxed worker. */
  processor: string;
}

const config = JSON.parse(process.argv[2]!) as BullWorkerConfig;
const connection = bullConnection(config);
const processor = config.processor === 'inline' ? async (job: { data: unknown }) => job.data : config.processor;
const worker = new Worker(config.queue, processor, { connection, concurrency: config.concurrency, useWorkerThreads: false });
worker.on('error', (err) => process.stderr.write(`bullmq worker: ${err.message}\n`));
await worker.waitUntilReady();
process.stdout.write('ready\n');
process.once('SIGTERM', () => {
  void worker.close().then(() => {
    const cpu = process.cpuUsage();
    process.stdout.write(`${JSON.stringify({ cpuMs: (cpu.user + cpu.system) / 1000 })}\n`);
    process.exit(0);
  });
});
