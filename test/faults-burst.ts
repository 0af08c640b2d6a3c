/**
 * A burst of requests larger than inotify's queue (fs.inotify.max_queued_events,
 * 16384 by default): the kernel drops the events past it without telling
 * anyone, so only the periodic safety rescan can find those requests. The
 * enqueue loop never yields to the event loop (each enqueue() is synchronous
 * underneath), so the server reads no event until the whole burst is in.
 *
 * WQ_BURST sets the burst size (default 50,000, the figure); it must
 * exceed max_queued_events for the test to mean anything.
 */
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { WorkQueueClient } from '../src/client.js';
import { decodeResult } from '../src/spool/codec.js';
import { spoolContents, startServer, waitFor } from './fixtures/helpers.js';
import { GatedManager, RecordingLogger, spoolIn } from './fixtures/hostile.js';

const BURST = Number(process.env.WQ_BURST ?? 50_000);

function maxQueuedEvents(): number | undefined {
  try {
    return Number(readFileSync('/proc/sys/fs/inotify/max_queued_events', 'utf8'));
  } catch {
    return undefined; // not Linux: fs.watch is not inotify, and the test still proves the burst is processed
  }
}

t.test(`a burst of ${BURST} requests overflows inotify and is fully processed thanks to the rescan`, async (t) => {
  const limit = maxQueuedEvents();
  if (limit !== undefined) t.ok(BURST > limit, `the burst (${BURST}) exceeds inotify's queue (${limit})`);
  const { spool } = spoolIn(t);
  const logger = new RecordingLogger();
  const manager = new GatedManager(64, (req: number) => req, false);
  startServer(t, manager, { spool, rescanIntervalMs: 500, logger });
  const client = new WorkQueueClient({ spool });
  t.teardown(() => client.close());
  const ids: string[] = [];
  for (let i = 0; i < BURST; i++) ids.push(await client.enqueue(i));
  const complete = join(spool, 'complete');
  await waitFor(() => readdirSync(complete).length === BURST, `all ${BURST} results`, 150_000, 50);
  if (limit !== undefined) {
    t.ok(logger.find('the file watcher missed entries; the rescan found them').length > 0, 'the watcher did overflow: the rescan found what it never reported');
  }
  t.equal(manager.calls.length, BURST, 'every request ran once');
  let wrong = 0;
  for (const [i, id] of ids.entries()) {
    const result = decodeResult(readFileSync(join(complete, id)));
    if (!(result.ok && result.value === i)) wrong++;
  }
  t.equal(wrong, 0, 'every request has its own result');
  const left = spoolContents(spool);
  for (const dir of ['requested', 'pending', 'running', 'aborting']) t.strictSame(left[dir], [], `${dir}/ is empty`);
});
