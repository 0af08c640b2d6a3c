/**
 * The timing loop every bench client process shares (wq's, BullMQ's): untimed
 * round trips first, as many at a time as the timed ones, so that what gets
 * compiled and optimized is what is measured; then "ready" on stdout, a wait
 * for "go" on stdin (so several clients start together), and the timed round
 * trips shared by `concurrency` async loops.
 */
import { createInterface } from 'node:readline';

export interface RoundTripLoops {
  /** Round trips to time, shared by `concurrency` async loops. */
  count: number;
  concurrency: number;
  /** Untimed round trips first, `concurrency` at a time. */
  warmup: number;
}

export interface ClientReport {
  latenciesMs: number[];
  wallMs: number;
  /** This process's CPU time (user + system) over the measured requests. */
  cpuMs: number;
}

/** Runs the loops; `roundTrip(n)` gets -1, -2 … while warming up, then 1, 2 …. */
export async function timeRoundTrips(loops: RoundTripLoops, roundTrip: (n: number) => Promise<void>): Promise<ClientReport> {
  let warmed = 0;
  await Promise.all(
    Array.from({ length: Math.min(loops.concurrency, Math.max(loops.warmup, 1)) }, async () => {
      while (warmed < loops.warmup) await roundTrip(-++warmed);
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
  const loop = async (): Promise<void> => {
    while (started < loops.count) {
      const n = ++started;
      const t = performance.now();
      await roundTrip(n);
      latenciesMs.push(performance.now() - t);
    }
  };
  await Promise.all(Array.from({ length: loops.concurrency }, loop));
  const cpu = process.cpuUsage(cpu0);
  return { latenciesMs, wallMs: performance.now() - t0, cpuMs: (cpu.user + cpu.system) / 1000 };
}
