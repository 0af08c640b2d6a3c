/**
 * `wq serve --metrics-port`: an OpenTelemetry MeterProvider whose Prometheus
 * reader answers `GET /metrics` on HOST:PORT. Only this module imports the SDK,
 * and only when called, so `wq serve` without the flag never loads it.
 */
import { hostname } from 'node:os';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Meter } from '@opentelemetry/api';
import { METER_NAME } from '../metrics.js';
import { CliError, EXIT } from './common.js';

/** Loopback only unless asked: metrics name the spool's load, not for the whole network. */
export const DEFAULT_METRICS_HOST = '127.0.0.1';

export const METRICS_PATH = '/metrics';

/** The package's version (from src/cli/ and dist/cli/ alike), for the resource and the Meter's scope. */
import { VERSION } from '../version.js';

/** The Prometheus text format version the body follows (Prometheus 3 wants it in Content-Type). */
const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export interface MetricsEndpointOptions {
  /** TCP port; 0 picks a free one (the log line and `url` say which). */
  port: number;
  /** @default DEFAULT_METRICS_HOST */
  host?: string;
}

export interface MetricsEndpoint {
  /** The Meter to hand to `new WorkQueueServer({ meter })`. */
  meter: Meter;
  /** Where to scrape, e.g. `http://127.0.0.1:9464/metrics`. */
  url: string;
  /** Stops the HTTP listener and the MeterProvider. */
  close(): Promise<void>;
}

/**
 * Starts the Prometheus endpoint. Rejects with a CliError (exit 3) when the
 * address cannot be bound: the port is taken, privileged, or the host is not local.
 * @example
 * const metrics = await startMetricsEndpoint({ port: 9464 });
 * await new WorkQueueServer({ spool, meter: metrics.meter }).processRequests(manager, { signal });
 * await metrics.close();
 */
export async function startMetricsEndpoint(options: MetricsEndpointOptions): Promise<MetricsEndpoint> {
  const host = options.host ?? DEFAULT_METRICS_HOST;
  const [{ MeterProvider }, { PrometheusExporter }, { defaultResource, resourceFromAttributes }] = await Promise.all([
    import('@opentelemetry/sdk-metrics'),
    import('@opentelemetry/exporter-prometheus'),
    import('@opentelemetry/resources'),
  ]);
  // We run the HTTP listener ourselves: the exporter's own treats port 0 as "default 9464",
  // reads OTEL_EXPORTER_PROMETHEUS_* from the environment, and reports bind errors only to its diag logger.
  const exporter = new PrometheusExporter({ preventServerStart: true });
  const resource = defaultResource().merge(resourceFromAttributes({ 'service.name': 'wq', 'service.version': VERSION, 'host.name': hostname() }));
  const provider = new MeterProvider({ resource, readers: [exporter] });
  const http = createServer((request, response) => answer(request, response, (req, res) => exporter.getMetricsRequestHandler(req, res)));
  try {
    await listen(http, options.port, host);
  } catch (err) {
    await provider.shutdown();
    throw new CliError(`cannot serve metrics on ${formatHostPort(host, options.port)}: ${describeBindError(err as NodeJS.ErrnoException)}`, EXIT.spool);
  }
  http.unref(); // the server loop keeps the process alive; this listener alone must not
  const address = http.address();
  const port = typeof address === 'object' && address !== null ? address.port : options.port;
  return {
    meter: provider.getMeter(METER_NAME, VERSION),
    url: `http://${formatHostPort(host, port)}${METRICS_PATH}`,
    async close() {
      await new Promise<void>((resolve) => {
        http.close(() => resolve());
        http.closeAllConnections();
      });
      await provider.shutdown();
    },
  };
}

function answer(request: IncomingMessage, response: ServerResponse, scrape: (req: IncomingMessage, res: ServerResponse) => void): void {
  let path: string;
  try {
    path = new URL(request.url ?? '/', 'http://localhost').pathname;
  } catch {
    response.writeHead(400).end();
    return;
  }
  if (path !== METRICS_PATH) {
    response.writeHead(404, { 'content-type': 'text/plain' }).end(`not found; metrics are at ${METRICS_PATH}\n`);
    return;
  }
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    response.writeHead(405, { allow: 'GET, HEAD' }).end();
    return;
  }
  scrape(request, response);
  // The exporter sets a bare `text/plain` synchronously and ends the response after collecting.
  if (!response.headersSent) response.setHeader('content-type', CONTENT_TYPE);
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function describeBindError(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'EADDRINUSE':
      return 'the port is already in use (another wq serve, or another exporter?); choose another --metrics-port';
    case 'EACCES':
      return 'permission denied (ports below 1024 need privileges); choose another --metrics-port';
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `--metrics-host is not an address of this machine (${err.code})`;
    default:
      return err.message;
  }
}

function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
