/**
 * What the server's metric calls cost per request: the calls a request that
 * starts at once makes (received, started, finished, and one tick), timed with the API's no-op Meter
 * (a server without --metrics-port) and with the SDK and an in-memory reader.
 *
 *   npm run build && tsc -p tsconfig.bench.json && node dist-bench/bench/metrics-overhead.js
 */
import { metrics } from '@opentelemetry/api';
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { ServerMetrics, type MetricsStamps } from '../src/metrics.js';

const REQUESTS = 200_000;
const ROUNDS = 5;
const snapshot = () => ({ pending: 0, running: 0, capacityUsage: 0, capacityLimit: 1, unclaimedResults: 0 });

function perRequestNs(serverMetrics: ServerMetrics): number {
  const t = process.hrtime.bigint();
  for (let i = 0; i < REQUESTS; i++) {
    const stamps: MetricsStamps = { waitingSince: serverMetrics.received() }; // the server keeps them in its book entry
    stamps.runningSince = serverMetrics.started(stamps);
    serverMetrics.finished('normal', stamps);
    serverMetrics.tick();
  }
  return Number(process.hrtime.bigint() - t) / REQUESTS;
}

const noop = new ServerMetrics(metrics.getMeterProvider().getMeter('wq'), snapshot);
const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
const provider = new MeterProvider({ readers: [new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 60_000 })] });
const sdk = new ServerMetrics(provider.getMeter('wq'), snapshot);

const results: Record<string, number[]> = { 'no-op Meter': [], 'SDK Meter': [] };
for (let r = 0; r < ROUNDS; r++) {
  results['no-op Meter']!.push(perRequestNs(noop));
  results['SDK Meter']!.push(perRequestNs(sdk));
}
for (const [name, ns] of Object.entries(results)) {
  const sorted = [...ns].sort((a, b) => a - b);
  process.stdout.write(`${name}: ${sorted[Math.floor(sorted.length / 2)]!.toFixed(0)} ns per request (median of ${ROUNDS} rounds of ${REQUESTS})\n`);
}
noop.close();
sdk.close();
await provider.shutdown();
