/**
 * What is planted at complete/<id> while `wq wait` waits for <id> is not a
 * result from the server: the client says so once and keeps waiting, and the
 * real result (the server replaces the planted entry) is then claimed.
 */
import { renameSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { spawnWq, spoolContents, startCliServer, waitFor } from '../fixtures/helpers.js';
import { closed, collect, openGate, waitGate, wq } from '../fixtures/gates.js';

const PLANTS = {
  'a symlink': (path: string, dir: string) => symlinkSync(join(dir, 'elsewhere'), path),
  garbage: (path: string) => writeFileSync(path, 'not msgpack at all \xff'),
  'a FIFO': (path: string) => {
    if (spawnSync('mkfifo', [path]).status !== 0) throw new Error('mkfifo failed');
  },
  "another request's result": async (path: string, _dir: string, spool: string) => {
    const other = (await wq(['enqueue', '--spool', spool, '--', 'echo', 'other'])).stdout.trim();
    await waitFor(() => spoolContents(spool).complete.includes(other), 'the other result');
    renameSync(join(spool, 'complete', other), path);
  },
} as const;

for (const [kind, plant] of Object.entries(PLANTS)) {
  t.test(`${kind} planted at complete/<id>: wq wait reports it once, keeps waiting, and gets the real result`, async (t) => {
    const dir = realpathSync(t.testdir());
    const spool = join(dir, 'spool');
    writeFileSync(join(dir, 'elsewhere'), 'a regular file behind the link');
    await startCliServer(t, spool, ['--max-tasks', '2']); // room for another request beside the blocked one
    const gate = join(dir, 'go');
    t.teardown(() => openGate(gate));
    const queued = await wq(['enqueue', '--spool', spool, '--', 'sh', '-c', `${waitGate(gate)}; echo real`]);
    const id = queued.stdout.trim();
    await waitFor(() => spoolContents(spool).running.includes(id), 'the request to run');

    const child = spawnWq(['wait', '--spool', spool, id]);
    t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')));
    const stdout = collect(child.stdout);
    const stderr = collect(child.stderr);
    const ended = closed(child);
    await plant(join(spool, 'complete', id), dir, spool);
    await waitFor(() => stderr.text().includes('ignoring') || child.exitCode !== null, 'the client to notice what was planted');
    t.equal(child.exitCode, null, 'still waiting');

    openGate(gate);
    t.same(await ended, { code: 0, signal: null }, 'the real result');
    t.equal(stdout.text(), 'real\n');
    const lines = stderr.text().split('\n').filter(Boolean);
    t.equal(lines.length, 1, 'reported once');
    t.match(lines[0], new RegExp(`^wq: ignoring complete/${id}, which is not this request's result from the server \\(.+\\); still waiting$`));
    t.strictSame(spoolContents(spool).complete, [], 'nothing left unclaimed');
  });
}
