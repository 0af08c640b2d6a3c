/** Small statistics helpers for the benchmarks. */

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index]!;
}

export function median(values: readonly number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50);
}

export interface LatencySummary {
  count: number;
  p50Ms: number;
  p99Ms: number;
  /** Requests per second over the whole run. */
  rps: number;
  /** CPU time the client processes spent per request (wq scenarios only). */
  clientCpuUsPerRequest?: number;
}

export function summarize(latenciesMs: number[], wallMs: number): LatencySummary {
  const sorted = [...latenciesMs].sort((a, b) => a - b);
  return { count: sorted.length, p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99), rps: (sorted.length / wallMs) * 1000 };
}

/** Median of each field across repeated runs. */
export function medianSummary(runs: LatencySummary[]): LatencySummary {
  return {
    count: runs[0]?.count ?? 0,
    p50Ms: median(runs.map((r) => r.p50Ms)),
    p99Ms: median(runs.map((r) => r.p99Ms)),
    rps: median(runs.map((r) => r.rps)),
    ...(runs.every((r) => r.clientCpuUsPerRequest !== undefined) ? { clientCpuUsPerRequest: median(runs.map((r) => r.clientCpuUsPerRequest!)) } : {}),
  };
}
