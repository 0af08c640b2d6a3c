/**
 * A crash-torture client in its own process, using the real WorkQueueClient.
 * It appends what it saw to its log (one JSON record a line, O_APPEND) right
 * after each step, so the harness knows which ids it was given and which
 * results it claimed even when it is killed with SIGKILL.
 *
 * - waiter: enqueue, log `E`, wait, log `R` (or `X`); repeat until the stop
 *   file exists, then log `D` and exit 0.
 * - enqueuer: print "go", then enqueue large requests back to back, logging
 *   each `E`, until killed (it exits after `maxRequests`).
 */
import { existsSync, openSync, writeSync } from 'node:fs';
import { WorkQueueClient } from '../src/client.js';
import type { WorkQueueError } from '../src/errors.js';
import { padByte, Prng, type ClientRecord, type TortureBody, type TortureClientConfig, type TortureValue } from './torture-common.js';

/** Largest pad of a waiter's request: small, but not all the same size. */
const WAITER_MAX_PAD_BYTES = 4096;

const config = JSON.parse(process.argv[2]!) as TortureClientConfig;
const log = openSync(config.log, 'a');
const record = (r: ClientRecord): void => void writeSync(log, `${JSON.stringify(r)}\n`);
const prng = new Prng(config.seed);
const client = new WorkQueueClient({ spool: config.spool, durable: config.durable });
// The harness died: do not linger.
process.stdin.on('end', () => process.exit(1));
process.stdin.resume();

function body(seq: number): TortureBody {
  const padBytes = config.kind === 'enqueuer' ? config.padBytes : prng.int(0, WAITER_MAX_PAD_BYTES);
  return {
    c: config.index,
    s: seq,
    workMs: prng.int(0, config.maxWorkMs),
    fail: prng.chance(config.failRate),
    padBytes,
    pad: Buffer.alloc(padBytes, padByte(config.index, seq)),
  };
}

async function waiter(): Promise<void> {
  for (let seq = 1; !existsSync(config.stopFile); seq++) {
    const id = await client.enqueue(body(seq));
    record({ k: 'E', id, s: seq });
    try {
      const result = await client.waitForResult(id);
      const r: ClientRecord = { k: 'R', id, s: seq, status: result.status };
      if (result.ok) r.value = result.value as TortureValue;
      else r.error = result.error?.message;
      record(r);
    } catch (err) {
      record({ k: 'X', id, s: seq, error: (err as Error).message, code: (err as WorkQueueError).code });
    }
  }
  record({ k: 'D' });
}

async function enqueuer(): Promise<void> {
  client.state('0000000000000000-000000000000'); // opens the spool before "go", so the kill lands in enqueue()
  process.stdout.write('go\n');
  for (let seq = 1; seq <= config.maxRequests; seq++) {
    const id = await client.enqueue(body(seq));
    record({ k: 'E', id, s: seq });
  }
  record({ k: 'D' });
}

await (config.kind === 'waiter' ? waiter() : enqueuer());
client.close();
process.exit(0);
