/**
 * A benchmark client in its own process: waits for "go" on stdin (so several
 * clients start together), runs its round trips, prints one JSON line with the
 * latencies and the wall time.
 */
import { WorkQueueClient } from '../src/client.js';
import { timeRoundTrips, type RoundTripLoops } from './round-trips.js';

export type { ClientReport } from './round-trips.js';

export interface ClientConfig extends RoundTripLoops {
  spool: string;
  /** A queue on Redis (`redis://…`) instead of the spool. */
  queue?: string;
  watch: boolean;
  recheckIntervalMs: number;
  durable: boolean;
  /** The request every round trip sends (a command server's `{ argv }`); by default a number, which the no-op task returns. */
  request?: unknown;
}

const config = JSON.parse(process.argv[2]!) as ClientConfig;
const client = new WorkQueueClient(
  config.queue !== undefined
    ? { queue: config.queue, recheckIntervalMs: config.recheckIntervalMs }
    : { spool: config.spool, watch: config.watch, recheckIntervalMs: config.recheckIntervalMs, durable: config.durable },
);
const report = await timeRoundTrips(config, async (n) => void (await client.run(config.request ?? n)));
process.stdout.write(`${JSON.stringify(report)}\n`);
client.close();
