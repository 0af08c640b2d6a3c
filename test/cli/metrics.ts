/**
 * `wq serve --metrics-port`, black-box: the real bin/wq serves Prometheus text
 * on /metrics; bad ports and taken ports fail with a message and an exit code;
 * without the flag the OpenTelemetry SDK is never loaded.
 */
import { createServer, type Server } from 'node:net';
import { realpathSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import t, { type Test } from 'tap';
import { spoolContents, waitFor } from '../fixtures/helpers.js';
import { exited, startServeWith, wq } from '../fixtures/cli.js';

function spoolIn(t: Test): string {
  return join(realpathSync(t.testdir()), 'spool');
}

/** The scrape URL `wq serve` logged. */
async function metricsUrl(stderr: () => string): Promise<string> {
  const match = await waitFor(() => /serving metrics url=(\S+)/.exec(stderr()), 'the metrics URL in the log');
  return (match as RegExpExecArray)[1]!; // waitFor resolves only with a truthy value
}

/** A TCP port on 127.0.0.1 held by this test until it ends. */
async function takenPort(t: Test): Promise<number> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as { port: number }).port;
}

t.test('wq serve --metrics-port serves Prometheus text on /metrics', async (t) => {
  const spool = spoolIn(t);
  const { child, stderr } = await startServeWith(t, ['--spool', spool, '--metrics-port', '0']);
  const url = await metricsUrl(stderr);
  t.match(url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/, 'on loopback by default');

  t.equal((await wq(['enqueue', '--spool', spool, '--wait', '--', 'true'])).code, 0);
  t.equal((await wq(['enqueue', '--spool', spool, '--wait', '--', 'true'])).code, 0);

  const response = await fetch(url);
  t.equal(response.status, 200);
  t.match(response.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  const body = await response.text();
  t.match(body, /^# TYPE wq_request_wait_duration histogram$/m, 'the wait-time histogram is there');
  t.match(body, /^wq_request_wait_duration_bucket\{[^}]*le="\+Inf"\} 2$/m, 'with both requests in it');
  t.match(body, /^wq_request_wait_duration_bucket\{[^}]*le="0\.0001"\} \d+$/m, 'in the documented buckets');
  t.match(body, /^wq_request_received_total\{[^}]*\} 2$/m);
  t.match(body, /^wq_request_finished_total\{[^}]*wq_request_status="normal"[^}]*\} 2$/m);
  t.match(body, /^wq_request_count\{[^}]*wq_request_state="pending"[^}]*\} 0$/m);
  t.match(body, /^wq_capacity_limit\{[^}]*\} 1$/m);
  t.match(body, /^target_info\{[^}]*service_name="wq"/m, 'the resource names the service');

  t.equal((await fetch(new URL('/', url))).status, 404, 'nothing else is served');
  t.equal((await fetch(url, { method: 'POST' })).status, 405);

  child.kill('SIGTERM');
  t.same(await exited(child), { code: 0, signal: null }, 'a signal still stops it cleanly');
  await t.rejects(fetch(url), 'and the port is closed');
});

t.test('a taken port fails at once with exit 3 and a message, before the spool is served', async (t) => {
  const spool = spoolIn(t);
  const port = await takenPort(t);
  const result = await wq(['serve', '--spool', spool, '--metrics-port', String(port)]);
  t.equal(result.code, 3);
  t.match(result.stderr, `wq: cannot serve metrics on 127.0.0.1:${port}: the port is already in use`);
  t.notMatch(result.stderr, 'server started');
  t.same(spoolContents(spool).running, [], 'nothing was started');
});

t.test('bad --metrics-port and --metrics-host usage exit 2', async (t) => {
  const spool = spoolIn(t);
  for (const port of ['70000', 'abc', '-1', '']) {
    const result = await wq(['serve', '--spool', spool, '--metrics-port', port]);
    t.equal(result.code, 2, `--metrics-port "${port}"`);
    t.match(result.stderr, 'expected a port number from 0 to 65535');
  }
  const hostOnly = await wq(['serve', '--spool', spool, '--metrics-host', '0.0.0.0']);
  t.equal(hostOnly.code, 2);
  t.match(hostOnly.stderr, '--metrics-host needs --metrics-port');
});

t.test('without --metrics-port the OpenTelemetry SDK is never loaded', async (t) => {
  // A module hook that makes any import of the SDK or the exporter fail.
  const dir = realpathSync(
    t.testdir({
      'hooks.mjs': `export async function resolve(specifier, context, next) {
        if (/^@opentelemetry\\/(sdk-metrics|exporter-prometheus|resources)/.test(specifier)) throw new Error('blocked import of ' + specifier);
        return next(specifier, context);
      }`,
      'block-sdk.mjs': `import { register } from 'node:module';\nregister('./hooks.mjs', import.meta.url);\n`,
    }),
  );
  const env = { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${pathToFileURL(join(dir, 'block-sdk.mjs')).href}` };
  const spool = join(dir, 'spool');

  const { child } = await startServeWith(t, ['--spool', spool], { env });
  t.equal((await wq(['enqueue', '--spool', spool, '--wait', '--', 'echo', 'served'])).stdout, 'served\n', 'serves without the SDK');
  child.kill('SIGTERM');
  t.same(await exited(child), { code: 0, signal: null });

  const blocked = await wq(['serve', '--spool', spool, '--metrics-port', '0'], { env });
  t.not(blocked.code, 0, 'the hook does block the SDK, so the first run proves it was not loaded');
  t.match(blocked.stderr, 'blocked import of @opentelemetry/');
});
