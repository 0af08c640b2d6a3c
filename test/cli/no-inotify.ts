/**
 * With the inotify watches used up (fs.inotify.max_user_watches), fs.watch
 * fails with ENOSPC. The slow re-checks are the safety net: the client and the
 * server say so once and go on without watching. The fault is injected into
 * the wq processes alone (test/fixtures/no-inotify.cjs): lowering the limit
 * would hit every process of the machine.
 */
import { realpathSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ROOT, spawnWq, spoolContents, startCliServer, waitFor } from '../fixtures/helpers.js';
import { captureStderr, exited, wq } from '../fixtures/cli.js';

const NO_INOTIFY = { NODE_OPTIONS: `--require ${join(ROOT, 'test', 'fixtures', 'no-inotify.cjs')}` };

t.test('inotify watches used up: wq enqueue --wait still gets its result through the re-check, and says so once', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  await startCliServer(t, spool);
  const notice = `wq: cannot watch ${spool}/complete for results \\(ENOSPC: System limit for number of file watchers reached, watch '[^']+'\\); checking every 1 s instead\\n`;

  const r = await wq(['enqueue', '--spool', spool, '--wait', '--', 'echo', 'hi'], { env: NO_INOTIFY });
  t.equal(r.code, 0, 'the result arrives');
  t.equal(r.stdout, 'hi\n');
  t.match(r.stderr, new RegExp(`^${notice}$`), 'one notice on stderr');

  const followed = await wq(['enqueue', '--spool', spool, '--wait', '--follow', '--', 'sh', '-c', 'echo out; echo err >&2'], { env: NO_INOTIFY });
  t.equal(followed.code, 0, '--follow too');
  t.equal(followed.stdout, 'out\n');
  t.equal(followed.stderr.replace(new RegExp(notice), ''), 'err\n', "the command's stderr and the notice, once");
  t.match(followed.stderr, /cannot watch/);

  const quiet = await wq(['enqueue', '--spool', spool, '--wait', '--quiet', '--', 'echo', 'hi'], { env: NO_INOTIFY });
  t.same(quiet, { code: 0, signal: null, stdout: 'hi\n', stderr: '' }, '--quiet: no notice');
  t.strictSame(spoolContents(spool).complete, [], 'every result was claimed');
});

t.test('inotify watches used up: wq serve relies on its rescans, logs the failure once per watch, and serves', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  const server = spawnWq(['serve', '--spool', spool, '--rescan-interval', '0.5'], { env: NO_INOTIFY });
  t.teardown(() => void (server.exitCode === null && server.kill('SIGKILL')));
  const log = captureStderr(server);
  await waitFor(() => log.text().includes('server started'), 'wq serve to start');
  for (const n of [1, 2, 3]) {
    t.same(await wq(['enqueue', '--spool', spool, '--wait', '--', 'echo', String(n)]), { code: 0, signal: null, stdout: `${n}\n`, stderr: '' }, `request ${n} is served`);
  }
  server.kill('SIGTERM');
  t.equal((await exited(server)).code, 0);
  for (const dir of ['requested', 'aborting', 'spool']) {
    const lines = log.text().split('\n').filter((line) => line.includes(`watching ${dir}/ failed; will retry`));
    t.equal(lines.length, 1, `watching ${dir}/: one error line, however many retries`);
    t.match(lines[0], 'code=ENOSPC');
  }
});
