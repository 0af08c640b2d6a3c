/**
 * `wq wait --keep` on every backend (test/fixtures/backends.ts): the result is
 * printed and left for a later `wq wait`; such a wait never aborts its
 * request (a deadline or a signal only stops the waiting); a kept read racing
 * a claim never costs the claimer any output. Observed through `wq` only.
 */
import type { Test } from 'tap';
import { spawnWqUntracked, wq } from '../fixtures/cli.js';
import { forEachBackend, requests, type QueueUnderTest, type RequestJson } from '../fixtures/backends.js';
import { closed, collect } from '../fixtures/gates.js';
import { waitFor } from '../fixtures/helpers.js';
import { listensForStopSignals } from '../fixtures/processes.js';

/** Output longer than the 1 MiB a result carries inline. */
const LONG_BYTES = 1_500_000;
const LONG_COMMAND = ['sh', '-c', `head -c ${LONG_BYTES} /dev/zero | tr '\\0' x; echo err >&2; exit 3`];


async function stateOf(t: Test, q: QueueUnderTest, id: string): Promise<RequestJson | undefined> {
  return (await requests(t, q)).find((r) => r.id === id);
}

forEachBackend('--keep prints the whole output and leaves the result; a later wq wait claims it', async (t, q) => {
  await q.serve();
  const id = (await wq(['enqueue', ...q.flags, '--quiet', '--', ...LONG_COMMAND])).stdout.trim();
  for (const round of [1, 2]) {
    const kept = await wq(['wait', ...q.flags, '--keep', id]);
    t.equal(kept.code, 3, `round ${round}: the command's exit code`);
    t.equal(kept.stdout, 'x'.repeat(LONG_BYTES), `round ${round}: the whole output`);
    t.equal(kept.stderr, 'err\n');
    t.match(await stateOf(t, q, id), { state: 'complete' }, `round ${round}: the result is still there`);
  }
  const json = await wq(['wait', ...q.flags, '--keep', '--json', id]);
  t.equal(json.code, 3);
  t.match(JSON.parse(json.stdout), { id, exitCode: 3, ok: true, status: 'normal', stderr: 'err\n' });
  const claimed = await wq(['wait', ...q.flags, id]);
  t.equal(claimed.code, 3);
  t.equal(claimed.stdout.length, LONG_BYTES, 'the claim gets the whole output too');
  t.same(await requests(t, q), [], 'now it is claimed');
  const gone = await wq(['wait', ...q.flags, '--keep', id]);
  t.equal(gone.code, 4, 'a claimed result is no longer there to keep');
  t.match(gone.stderr, /unknown request id/);
});

forEachBackend('--keep never aborts: --timeout and SIGINT only stop the waiting', async (t, q) => {
  // No server: the request stays queued.
  const id = (await wq(['enqueue', ...q.flags, '--quiet', '--', 'echo', 'done'])).stdout.trim();
  const noServer = `wq: no server is running on ${q.where}; the request stays queued until \`wq serve\` starts\n`;

  const timedOut = await wq(['wait', ...q.flags, '--keep', '--timeout', '0.2', id]);
  t.equal(timedOut.code, 124);
  t.equal(timedOut.stdout, '');
  t.match(timedOut.stderr, new RegExp(`^${escape(noServer)}wq: timed out after 0\\.2 s \\(--timeout\\) waiting for ${id}; the request was left in the \\w+ \\(--keep\\)\\n$`));
  const now = await wq(['wait', ...q.flags, '--keep', '--timeout', '0', '--json', id]);
  t.equal(now.code, 124, '--timeout 0: the result if it is there now, else 124');
  t.match(JSON.parse(now.stdout), { id, status: 'timed_out', deadline: 'total' });

  const child = spawnWqUntracked(['wait', ...q.flags, '--keep', id]);
  t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')));
  const stderr = collect(child.stderr);
  const ended = closed(child);
  await waitFor(() => listensForStopSignals(child.pid!), 'wq wait to listen for signals');
  child.kill('SIGINT');
  t.same(await ended, { code: 130, signal: null });
  t.match(stderr.text(), new RegExp(`^${escape(noServer)}wq: stopped waiting \\(SIGINT\\); request ${id} was left in the \\w+: collect it with \`wq wait ${id}\`\\n$`));
  const entry = await stateOf(t, q, id);
  t.ok(entry !== undefined && ['requested', 'pending'].includes(entry.state), 'the request is still queued');
  t.notOk(entry?.aborting, 'no abort was ever filed');

  await q.serve();
  t.same(await wq(['wait', ...q.flags, '--keep', id]), { code: 0, signal: null, stdout: 'done\n', stderr: '' }, '--keep waits for the result');
  t.same(await wq(['wait', ...q.flags, id]), { code: 0, signal: null, stdout: 'done\n', stderr: '' }, 'and leaves it to claim');
});

forEachBackend('kept reads racing a claim: the claimer always gets the whole output; a reader gets it whole or "unknown", never cut', async (t, q) => {
  await q.serve();
  const READERS = 3;
  for (let round = 0; round < 2; round++) {
    const id = (await wq(['enqueue', ...q.flags, '--quiet', '--', ...LONG_COMMAND])).stdout.trim();
    await waitFor(async () => (await stateOf(t, q, id))?.state === 'complete', 'the result');
    const [claim, ...reads] = await Promise.all([wq(['wait', ...q.flags, id]), ...Array.from({ length: READERS }, () => wq(['wait', ...q.flags, '--keep', id]))]);
    t.equal(claim!.code, 3, `round ${round}: the claim`);
    t.equal(claim!.stdout.length, LONG_BYTES, `round ${round}: the claimer got the whole output`);
    for (const read of reads) {
      if (read.code === 4) t.match(read.stderr, /unknown request id/, `round ${round}: a reader that came too late is told so`);
      else t.same({ code: read.code, bytes: read.stdout.length }, { code: 3, bytes: LONG_BYTES }, `round ${round}: a reader got the whole output`);
    }
    t.same(await requests(t, q), [], `round ${round}: claimed once`);
  }
});

forEachBackend('a deadline with nothing to wait for: unknown request id (exit 4), not a timeout, with or without --keep', async (t, q) => {
  await q.serve();
  const never = '1763830000000000-0123456789ab';
  const id = (await wq(['enqueue', ...q.flags, '--quiet', '--', 'echo', 'done'])).stdout.trim();
  t.equal((await wq(['wait', ...q.flags, id])).stdout, 'done\n', 'claimed: now unknown too');
  for (const gone of [never, id]) {
    for (const args of [['--keep', '--timeout', '0'], ['--timeout', '0'], ['--keep', '--timeout', '0.2'], ['--timeout', '0.2']]) {
      const r = await wq(['wait', ...q.flags, ...args, gone]);
      t.equal(r.code, 4, `${args.join(' ')} ${gone === never ? 'never enqueued' : 'claimed'}`);
      t.match(r.stderr, /unknown request id/);
    }
  }
  const status = await wq(['status', ...q.flags, '--json']);
  t.match(JSON.parse(status.stdout), { requests: [], counts: { aborting: 0 } }, 'nothing left, no abort counted');
});

/** `text` as a literal in a RegExp. */
function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
