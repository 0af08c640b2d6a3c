/**
 * A crash-torture server in its own process: a real WorkQueueServer with an
 * in-process handler that appends a START line to the ledger (O_APPEND, one
 * write) synchronously, before the task does anything, so the ledger's order
 * is the server's start order. Prints "ready" once it holds the lock and has
 * run its first tick; SIGTERM stops it gracefully (exit 0). It is meant to be
 * killed with SIGKILL at any moment.
 */
import { openSync, writeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLineLogger } from '../src/logger.js';
import { WorkQueueServer } from '../src/server.js';
import { InProcessTaskManager } from '../src/task-manager/in-process.js';
import { bodyIsWhole, ledgerLine, plannedFailureMessage, type TortureServerConfig, type TortureValue } from './torture-common.js';

const config = JSON.parse(process.argv[2]!) as TortureServerConfig;
const ledger = openSync(config.ledger, 'a');

async function handler(body: unknown, { id, signal }: { id: string; signal: AbortSignal }): Promise<TortureValue> {
  writeSync(ledger, ledgerLine(config.lifetime, id, body));
  if (!bodyIsWhole(body)) throw new Error(`torn request body for ${id}`);
  if (body.workMs > 0) await sleep(body.workMs, undefined, { signal });
  if (body.fail) throw new Error(plannedFailureMessage(id, config.lifetime));
  return { id, c: body.c, s: body.s, lifetime: config.lifetime };
}

const controller = new AbortController();
const server = new WorkQueueServer({
  spool: config.spool,
  durable: config.durable,
  logger: createLineLogger((line) => process.stderr.write(line), config.logLevel),
  ...config.housekeeping,
});
const done = server.processRequests(new InProcessTaskManager(handler, { maxTasks: config.maxTasks }), { signal: controller.signal });
done.then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`torture server failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(3);
  },
);
// A start that fails (the lock) rejects before this runs, and exits first.
setImmediate(() => process.stdout.write('ready\n'));
process.on('SIGTERM', () => controller.abort());
// The harness died: stop rather than serve an abandoned spool forever.
process.stdin.on('end', () => controller.abort());
process.stdin.resume();
