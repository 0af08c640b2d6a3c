/**
 * Faults at the moment a command is started: something planted where its
 * output log goes, and no file descriptors left. Either fails that request
 * alone, with a message that says why, before the command runs; the server
 * keeps serving and frees the slot.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { spawnWq, spoolContents, waitFor, WQ } from '../fixtures/helpers.js';
import { exited, wq } from '../fixtures/cli.js';
import { collect, openGate, sq, waitGate } from '../fixtures/gates.js';
import { readLines } from '../fixtures/processes.js';

async function enqueue(spool: string, argv: string[]): Promise<string> {
  const r = await wq(['enqueue', '--spool', spool, '--quiet', '--', ...argv]);
  if (r.code !== 0) throw new Error(`wq enqueue failed (${r.code}): ${r.stderr}`);
  return r.stdout.trim();
}

t.test('a directory planted at logs/<id>.stdout fails only that request, before its command runs; the slot is freed (--max-tasks 1)', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const ran = join(dir, 'ran');
  const victim = await enqueue(spool, ['sh', '-c', `echo victim >> ${sq(ran)}; sleep 2`]);
  const next = await enqueue(spool, ['sh', '-c', `echo next >> ${sq(ran)}; echo next`]);
  // Planted before the server takes the request: a non-empty directory, which the server may not remove.
  mkdirSync(join(spool, 'logs', `${victim}.stdout`));
  writeFileSync(join(spool, 'logs', `${victim}.stdout`, 'x'), '');
  const server = spawnWq(['serve', '--spool', spool, '--max-tasks', '1']);
  t.teardown(() => void server.kill('SIGKILL'));

  const failed = await wq(['wait', '--spool', spool, victim]);
  t.equal(failed.code, 1, 'the request fails');
  t.match(failed.stderr, /cannot create the output log logs\/\S+\.stdout: something that is not a file is in the way; the command was not started/);
  const ok = await wq(['wait', '--spool', spool, next]);
  t.strictSame([ok.code, ok.stdout], [0, 'next\n'], 'the next request still runs: the slot was freed');
  t.strictSame(readLines(ran), ['next'], 'the failed request\'s command never ran');
  const status = await wq(['status', '--spool', spool, '--json']);
  t.match(JSON.parse(status.stdout), { counts: { running: 0 } }, 'nothing is counted as running');
  t.strictSame(spoolContents(spool).running, [], 'nothing is left in running/');
});

t.test('no file descriptors left at spawn (ulimit -n 64, --max-tasks 20): requests fail with "too many open files", the server keeps serving', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const gate = join(dir, 'go');
  const started = join(dir, 'started');
  t.teardown(() => openGate(gate));
  const ids: string[] = [];
  for (let i = 0; i < 20; i++) ids.push(await enqueue(spool, ['sh', '-c', `echo ${i} >> ${sq(started)}; ${waitGate(gate)}; echo done ${i}`]));
  // A real descriptor limit: the shell lowers it, then becomes the server.
  const server = spawn('sh', ['-c', `ulimit -n 64 && exec ${sq(process.execPath)} ${sq(WQ)} serve --spool ${sq(spool)} --max-tasks 20`], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: withoutTapHooks(),
  });
  const serverLog = collect(server.stderr);
  t.teardown(() => void server.kill('SIGKILL'));
  await waitFor(() => serverLog.text().includes('server started') || server.exitCode !== null, 'the server to start', 30_000);
  t.equal(server.exitCode, null, 'the server started', { log: serverLog.text() });
  await waitFor(() => readLines(started).length > 0 || server.exitCode !== null, 'some tasks to start', 30_000);
  await waitFor(() => spoolContents(spool).pending.length === 0 || server.exitCode !== null, 'every request to be started or answered', 30_000);
  openGate(gate);

  const results = [];
  for (const id of ids) results.push(await wq(['wait', '--spool', spool, id])); // one at a time: 20 Node clients at once crawl on a loaded machine
  const ranOk = results.filter((r) => r.code === 0);
  const failedClearly = results.filter((r) => r.code === 1 && /too many open files/.test(r.stderr));
  t.ok(ranOk.length > 0, `some requests ran (${ranOk.length})`);
  t.ok(failedClearly.length > 0, `some failed for want of file descriptors (${failedClearly.length})`);
  t.equal(ranOk.length + failedClearly.length, 20, 'every request either ran or failed saying why', { others: results.filter((r) => !ranOk.includes(r) && !failedClearly.includes(r)) });
  t.notMatch(results.map((r) => r.stderr).join('\n'), /TypeError/, 'no TypeError reaches a client');
  t.equal(server.exitCode, null, 'the server is still serving');
  const after = await wq(['enqueue', '--spool', spool, '--wait', '--', 'echo', 'after']);
  t.strictSame([after.code, after.stdout], [0, 'after\n'], 'and runs the next request');
  server.kill('SIGTERM');
  t.equal((await exited(server)).code, 0, 'and stops cleanly');
});

/** A plain environment: tap's hooks (NODE_OPTIONS and its own variables) cannot load within 64 file descriptors. */
function withoutTapHooks(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!/^(NODE_|_?TAP)/i.test(key)) env[key] = value;
  return env;
}
