/**
 * `wq wait --keep`: the result is printed and left in the spool for a later
 * `wq wait`; such a wait never aborts its request (a deadline or a signal
 * only stops the waiting); and a kept read racing a claim never costs the
 * claimer any output.
 */
import { existsSync, readdirSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { openSpool } from '../../src/spool/layout.js';
import { spoolContents, startCliServer, waitFor } from '../fixtures/helpers.js';
import { closed, collect, wq } from '../fixtures/gates.js';
import { listensForStopSignals } from '../fixtures/processes.js';
import { spawnWqUntracked } from '../fixtures/cli.js';

/** Output longer than the 1 MiB a result carries inline: the rest is read from logs/. */
const LONG_BYTES = 1_500_000;
const LONG_COMMAND = ['sh', '-c', `head -c ${LONG_BYTES} /dev/zero | tr '\\0' x; echo err >&2; exit 3`];

function logs(spool: string): string[] {
  return existsSync(join(spool, 'logs')) ? readdirSync(join(spool, 'logs')) : [];
}

t.test('--keep prints the whole output and leaves the result and its logs; a later wq wait claims them', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  await startCliServer(t, spool);
  const id = (await wq(['enqueue', '--spool', spool, '--quiet', '--', ...LONG_COMMAND])).stdout.trim();
  for (const round of [1, 2]) {
    const kept = await wq(['wait', '--spool', spool, '--keep', id]);
    t.equal(kept.code, 3, `round ${round}: the command's exit code`);
    t.equal(kept.stdout, 'x'.repeat(LONG_BYTES), `round ${round}: the whole output, from the logs`);
    t.equal(kept.stderr, 'err\n');
    t.same(spoolContents(spool).complete, [id], `round ${round}: the result is still there`);
    t.same(logs(spool).sort(), [`${id}.pid`, `${id}.stderr`, `${id}.stdout`], `round ${round}: and so are its logs`);
  }
  const json = await wq(['wait', '--spool', spool, '--keep', '--json', id]);
  t.match(JSON.parse(json.stdout), { id, exitCode: 3, ok: true, status: 'normal', stderr: 'err\n' });
  const claimed = await wq(['wait', '--spool', spool, id]);
  t.equal(claimed.code, 3);
  t.equal(claimed.stdout.length, LONG_BYTES, 'the claim gets the whole output too');
  t.same(spoolContents(spool).complete, [], 'now it is claimed');
  t.same(logs(spool), [], 'with its logs');
  const gone = await wq(['wait', '--spool', spool, '--keep', id]);
  t.equal(gone.code, 4, 'a claimed result is no longer there to keep');
});

t.test('--keep never aborts: --timeout and signals only stop the waiting', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  openSpool(spool); // no server: the request stays queued
  const id = (await wq(['enqueue', '--spool', spool, '--quiet', '--', 'echo', 'done'])).stdout.trim();

  const timedOut = await wq(['wait', '--spool', spool, '--keep', '--timeout', '0.2', id]);
  t.equal(timedOut.code, 124);
  const noServer = `wq: no server is running on spool ${spool}; the request stays queued until \`wq serve\` starts\n`;
  t.equal(timedOut.stderr, `${noServer}wq: timed out after 0.2 s (--timeout) waiting for ${id}; the request was left in the spool (--keep)\n`);
  const now = await wq(['wait', '--spool', spool, '--keep', '--timeout', '0', '--json', id]);
  t.equal(now.code, 124, '--timeout 0: the result if it is there now, else 124');
  t.match(JSON.parse(now.stdout), { id, status: 'timed_out', deadline: 'total' });

  const child = spawnWqUntracked(['wait', '--spool', spool, '--keep', id]);
  t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')));
  const stderr = collect(child.stderr);
  const ended = closed(child);
  await waitFor(() => listensForStopSignals(child.pid!), 'wq wait to listen for signals');
  child.kill('SIGINT');
  t.same(await ended, { code: 130, signal: null });
  t.equal(stderr.text(), `${noServer}wq: stopped waiting (SIGINT); request ${id} was left in the spool: collect it with \`wq wait ${id}\`\n`);
  t.same(spoolContents(spool).aborting, [], 'no abort was ever filed');
  t.same(spoolContents(spool).requested, [id], 'the request is still queued');

  await startCliServer(t, spool);
  t.same(await wq(['wait', '--spool', spool, '--keep', id]), { code: 0, signal: null, stdout: 'done\n', stderr: '' }, '--keep waits for the result');
  t.same(await wq(['wait', '--spool', spool, id]), { code: 0, signal: null, stdout: 'done\n', stderr: '' }, 'and leaves it to claim');
});

t.test('kept reads racing a claim: the claimer always gets the whole output; a reader gets it whole or "unknown", never cut', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  await startCliServer(t, spool);
  const READERS = 3;
  for (let round = 0; round < 2; round++) {
    const id = (await wq(['enqueue', '--spool', spool, '--quiet', '--', ...LONG_COMMAND])).stdout.trim();
    await waitFor(() => spoolContents(spool).complete.includes(id), 'the result');
    const [claim, ...reads] = await Promise.all([wq(['wait', '--spool', spool, id]), ...Array.from({ length: READERS }, () => wq(['wait', '--spool', spool, '--keep', id]))]);
    t.equal(claim!.code, 3, `round ${round}: the claim`);
    t.equal(claim!.stdout.length, LONG_BYTES, `round ${round}: the claimer got the whole output`);
    for (const read of reads) {
      if (read.code === 4) t.match(read.stderr, /unknown request id/, `round ${round}: a reader that came too late is told so`);
      else t.same({ code: read.code, bytes: read.stdout.length }, { code: 3, bytes: LONG_BYTES }, `round ${round}: a reader got the whole output`);
    }
    t.same(spoolContents(spool).complete, [], `round ${round}: claimed once`);
  }
});

t.test('a deadline with nothing to wait for: unknown request id (exit 4), not a timeout, with or without --keep', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  await startCliServer(t, spool);
  const never = '1763830000000000-0123456789ab';
  const id = (await wq(['enqueue', '--spool', spool, '--quiet', '--', 'echo', 'done'])).stdout.trim();
  t.equal((await wq(['wait', '--spool', spool, id])).stdout, 'done\n', 'claimed: now unknown too');
  for (const gone of [never, id]) {
    for (const args of [['--keep', '--timeout', '0'], ['--timeout', '0'], ['--keep', '--timeout', '0.2'], ['--timeout', '0.2']]) {
      const r = await wq(['wait', '--spool', spool, ...args, gone]);
      t.equal(r.code, 4, `${args.join(' ')} ${gone === never ? 'never enqueued' : 'claimed'}`);
      t.match(r.stderr, /unknown request id/);
    }
  }
  t.same(spoolContents(spool).aborting, [], 'no abort filed for them');
});
