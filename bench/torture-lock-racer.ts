/**
 * A racing starter for the lock torture (torture-lock.ts): a real
 * WorkQueueServer in its own process, started on command. On each
 * "go <trial> <epochMs>" line it spins until that moment (so all racers start
 * at once) and starts serving; once it holds the lock ("server started") it
 * appends `take <pid> <trial>` to the shared ledger and answers "won <trial>";
 * a refused start answers "lost <trial> <error code>". A winner appends
 * `release <pid> <trial>` on "release", before it stops and lets the lock go,
 * then answers "released <trial>". So two overlapping holders show in the ledger.
 */
import { appendFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Logger } from '../src/logger.js';
import { WorkQueueServer } from '../src/server.js';
import { InProcessTaskManager } from '../src/task-manager/in-process.js';

const [spool, ledger] = process.argv.slice(2) as [string, string];
const answer = (line: string): boolean => process.stdout.write(`${line}\n`);

let trial = '';
let serving: { controller: AbortController; done: Promise<void> } | undefined;
const quiet = (): void => {};
const logger: Logger = {
  debug: quiet,
  warn: quiet,
  error: quiet,
  info: (message) => {
    if (message !== 'server started') return;
    appendFileSync(ledger, `take ${process.pid} ${trial}\n`);
    answer(`won ${trial}`);
  },
};

function start(): void {
  const controller = new AbortController();
  const server = new WorkQueueServer({ spool, logger });
  const done = server.processRequests(new InProcessTaskManager(async () => 'done', { maxTasks: 1 }), { signal: controller.signal });
  serving = { controller, done };
  const startedIn = trial;
  done.catch((err: unknown) => {
    serving = undefined;
    answer(`lost ${startedIn} ${(err as { code?: string }).code ?? String(err)}`);
  });
}

for await (const line of createInterface({ input: process.stdin })) {
  const [verb, n, at] = line.split(' ');
  if (verb === 'go') {
    trial = n!;
    while (Date.now() < Number(at)) {
      // spin: a timer would scatter the racers by milliseconds
    }
    start();
  } else if (verb === 'release' && serving !== undefined) {
    appendFileSync(ledger, `release ${process.pid} ${trial}\n`);
    const { controller, done } = serving;
    serving = undefined;
    controller.abort();
    await done;
    answer(`released ${trial}`);
  }
}
