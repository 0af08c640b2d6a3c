/**
 * Deadlines on every backend (test/fixtures/backends.ts): timeouts longer
 * than Node's timers can hold (2^31 ms, about 24.8 days) do not fire at once;
 * `--timeout 0` and `--run-timeout 0` end in 124 and leave nothing behind,
 * whether the request had started or not. Observed through `wq` and files the
 * tasks write only. (A server stopped past a run timeout, test/cli/deadlines.ts,
 * stays spool-only: on Redis a stopped server also loses its job locks.)
 */
import { existsSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { wq } from '../fixtures/cli.js';
import { forEachBackend, requests } from '../fixtures/backends.js';
import { sq } from '../fixtures/gates.js';
import { waitFor } from '../fixtures/helpers.js';
import { isGone, readPid } from '../fixtures/processes.js';

const THIRTY_DAYS_S = 30 * 24 * 3600;


forEachBackend('a --run-timeout of 30 days (over 2^31 ms) does not fire at once', async (t, q) => {
  await q.serve();
  // src/redis/server.ts arms the run timeout with a plain setTimeout(), which Node fires after 1 ms past 2^31 - 1 ms.
  const run = await wq(['enqueue', ...q.flags, '--wait', '--run-timeout', String(THIRTY_DAYS_S), '--', 'sh', '-c', 'sleep 0.3; echo done']);
  t.strictSame([run.code, run.stdout, run.stderr], [0, 'done\n', ''], '--run-timeout 2592000: the task runs to its end');
});

forEachBackend('a --timeout of 30 days (over 2^31 ms) does not fire at once, on enqueue --wait or wq wait', async (t, q) => {
  await q.serve();
  const total = await wq(['enqueue', ...q.flags, '--wait', '--timeout', String(THIRTY_DAYS_S), '--', 'sh', '-c', 'sleep 0.3; echo done']);
  t.strictSame([total.code, total.stdout, total.stderr], [0, 'done\n', ''], '--timeout 2592000: the client waits for the end');
  const id = (await wq(['enqueue', ...q.flags, '--quiet', '--', 'sh', '-c', 'sleep 0.3; echo done'])).stdout.trim();
  const later = await wq(['wait', ...q.flags, '--timeout', String(THIRTY_DAYS_S), id]);
  t.strictSame([later.code, later.stdout, later.stderr], [0, 'done\n', ''], 'wq wait --timeout 2592000 as well');
});

forEachBackend('--timeout 0 and --run-timeout 0: exit 124, and nothing is left, whether the request had started or not', async (t, q) => {
  const dir = realpathSync(t.testdir());
  await q.serve(['--max-tasks', '2']);
  // Aborted at once, whether the server had started it or not.
  for (let i = 0; i < 5; i++) {
    const r = await wq(['enqueue', ...q.flags, '--wait', '--timeout', '0', '--', 'sh', '-c', 'echo out; echo err >&2; sleep 1']);
    t.equal(r.code, 124, `--timeout 0 (${i + 1}): exit 124`);
  }
  // Timed out by the server as it starts, while it writes output.
  for (let i = 0; i < 5; i++) {
    const r = await wq(['enqueue', ...q.flags, '--wait', '--run-timeout', '0', '--', 'seq', '1', '300000']);
    t.equal(r.code, 124, `--run-timeout 0 (${i + 1}): exit 124`);
  }
  // Aborted while it runs and has written output.
  const pidFile = join(dir, 'task.pid');
  const id = (await wq(['enqueue', ...q.flags, '--quiet', '--', 'sh', '-c', `echo out; echo err >&2; echo $$ > ${sq(pidFile)}; exec sleep 30`])).stdout.trim();
  const pid = (await waitFor(() => readPid(pidFile), 'the task to start and write'))!;
  const timedOut = await wq(['wait', ...q.flags, '--timeout', '0', id]);
  t.equal(timedOut.code, 124, 'wq wait --timeout 0 on a running request: exit 124');
  await waitFor(() => isGone(pid), 'the task to be killed');
  await waitFor(async () => (await requests(t, q)).length === 0, 'the server to finish with every request');
  t.same(await requests(t, q), [], 'nothing left');
  t.equal((await wq(['wait', ...q.flags, id])).code, 4, 'the aborted request is in no state');
  t.ok(existsSync(pidFile), 'it had run');
});
