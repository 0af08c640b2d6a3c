/**
 * Housekeeping: the pure plan over plain data, then a real server on a real
 * spool removing an expired result (with its logs), a stale temp file and an
 * orphaned log, while keeping the logs of a request that is still running.
 */
import { existsSync, readdirSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { WorkQueueClient } from '../../../src/client.js';
import { logOwner, planHousekeeping, type AgedEntry, type HousekeepingPolicy } from '../../../src/spool/server/housekeeping.js';
import type { LogFields, Logger } from '../../../src/logger.js';
import { CommandTaskManager } from '../../../src/task-manager/command.js';
import { startServer, waitFor } from '../../fixtures/helpers.js';
import { openGate, waitGate } from '../../fixtures/gates.js';

const NOW = 1_800_000_000_000;
const POLICY: HousekeepingPolicy = { resultTtlMs: 10_000, leftoverMaxAgeMs: 1_000 };

/** An id whose timestamp is `n` µs after a fixed instant. */
function id(n: number): string {
  return `${String(1_790_000_000_000_000 + n)}-${n.toString(16).padStart(12, '0')}`;
}

/** An entry last changed `ageMs` before NOW. */
const aged = (name: string, ageMs: number): AgedEntry => ({ name, changedMs: NOW - ageMs });

t.test('planHousekeeping', async (t) => {
  t.test('nothing to do on an empty spool', async (t) => {
    t.strictSame(planHousekeeping(NOW, POLICY, [], [], [], new Set()), { expiredResults: [], staleTemps: [], orphanLogs: [] });
  });

  t.test('results go only once they are older than the result TTL', async (t) => {
    const complete = [aged(id(1), 10_001), aged(id(2), 10_000), aged(id(3), 9_999), aged(id(4), 0), aged(id(5), 3_600_000)];
    const plan = planHousekeeping(NOW, POLICY, complete, [], [], new Set());
    t.strictSame(plan.expiredResults, [id(1), id(5)], 'older than the TTL, strictly');
  });

  t.test('the leftover age does not apply to results, nor the TTL to temps', async (t) => {
    const plan = planHousekeeping(NOW, POLICY, [aged(id(1), 5_000)], [aged('result.1.aaaaaaaaaaaa', 5_000)], [], new Set());
    t.strictSame(plan.expiredResults, [], 'a result past the leftover age but within its TTL stays');
    t.strictSame(plan.staleTemps, ['result.1.aaaaaaaaaaaa'], 'a temp past the leftover age goes');
  });

  t.test('names in complete/ that are not ids are never removed', async (t) => {
    const complete = [aged('.hidden', 99_999_999), aged('notes.txt', 99_999_999), aged(`${id(1)}.bak`, 99_999_999), aged(id(2), 99_999_999)];
    const plan = planHousekeeping(NOW, POLICY, complete, [], [], new Set());
    t.strictSame(plan.expiredResults, [id(2)]);
  });

  t.test('temp files go after the leftover age, whatever their name', async (t) => {
    const temps = [aged('request.123.0123456789ab', 1_001), aged(`claim.${id(1)}.77`, 2_000), aged('lock.9.ffffffffffff', 999), aged('fresh', 0)];
    const plan = planHousekeeping(NOW, POLICY, [], temps, [], new Set());
    t.strictSame(plan.staleTemps, ['request.123.0123456789ab', `claim.${id(1)}.77`]);
  });

  t.test('logs of live ids stay; old logs of ids in no state go', async (t) => {
    const live = new Set([id(1), id(2)]);
    const logs = [
      aged(`${id(1)}.stdout`, 50_000), // live: kept however old
      aged(`${id(1)}.pid`, 50_000),
      aged(`${id(2)}.stderr`, 50_000),
      aged(`${id(3)}.stdout`, 50_000), // orphan, old: removed
      aged(`${id(3)}.pid`, 1_001),
      aged(`${id(4)}.stdout`, 500), // orphan but young: a task may just have started
    ];
    const plan = planHousekeeping(NOW, POLICY, [], [], logs, live);
    t.strictSame(plan.orphanLogs, [`${id(3)}.stdout`, `${id(3)}.pid`]);
  });

  t.test('the three lists are independent', async (t) => {
    const plan = planHousekeeping(
      NOW,
      POLICY,
      [aged(id(1), 20_000), aged(id(2), 1)],
      [aged('x', 2_000)],
      [aged(`${id(1)}.stdout`, 20_000), aged(`${id(9)}.stdout`, 20_000)],
      new Set([id(1), id(2)]),
    );
    t.strictSame(plan, { expiredResults: [id(1)], staleTemps: ['x'], orphanLogs: [`${id(9)}.stdout`] });
  });

  t.test('logOwner takes the id before the first dot', async (t) => {
    t.equal(logOwner(`${id(1)}.stdout`), id(1));
    t.equal(logOwner(`${id(1)}.tar.gz`), id(1));
    t.equal(logOwner(id(1)), id(1));
    t.equal(logOwner('.hidden'), '');
  });
});

interface LogCall {
  level: string;
  message: string;
  fields: LogFields | undefined;
}

/** A Logger that records every call, and lets a test react inside the call (while the tick still runs). */
function recordingLogger(onCall: (call: LogCall) => void = () => {}): { logger: Logger; calls: LogCall[] } {
  const calls: LogCall[] = [];
  const at = (level: string) => (message: string, fields?: LogFields) => {
    const call = { level, message, fields };
    calls.push(call);
    onCall(call);
  };
  return { logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }, calls };
}

/** Sum of one count over every 'housekeeping' line. */
function housekept(calls: LogCall[], key: 'expiredResults' | 'staleTemps' | 'orphanLogs'): number {
  return calls.filter((c) => c.message === 'housekeeping').reduce((sum, c) => sum + Number(c.fields?.[key] ?? 0), 0);
}

t.test('a real server removes leftovers and keeps what is live', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const logs = join(spool, 'logs');
  const gate = join(dir, 'go');
  t.teardown(() => openGate(gate));

  // Facts checked inside the server's own log calls, where the tick has not finished yet.
  const seenAtCompletion = new Map<string, { result: boolean; logs: string[] }>();
  const { logger, calls } = recordingLogger((call) => {
    if (call.message === 'completed') {
      const id = String(call.fields?.id);
      seenAtCompletion.set(id, { result: existsSync(join(spool, 'complete', id)), logs: readdirSync(logs).filter((n) => n.startsWith(id)).sort() });
    }
  });
  const manager = new CommandTaskManager({ maxTasks: 2, logDir: logs, killGraceMs: 500 });
  startServer(t, manager, {
    spool,
    logger,
    resultTtlMs: 50,
    leftoverMaxAgeMs: 50,
    housekeepingIntervalMs: 20,
    rescanIntervalMs: 20,
  });
  const client = new WorkQueueClient({ spool });
  t.teardown(() => client.close());

  // A request that keeps running: its logs are old but must stay.
  const running = await client.enqueue({ argv: ['sh', '-c', `echo started; ${waitGate(gate)}`] });
  await waitFor(() => existsSync(join(logs, `${running}.pid`)) && existsSync(join(spool, 'running', running)), 'the long request to run');

  // Leftovers, all created after the running request's logs.
  const staleTemp = join(spool, 'tmp', 'request.999999.0123456789ab');
  writeFileSync(staleTemp, 'half a request');
  const orphanId = '1700000000000000-0123456789ab';
  const orphanLog = join(logs, `${orphanId}.stdout`);
  writeFileSync(orphanLog, 'output of a request nobody knows\n');
  const unclaimed = await client.enqueue({ argv: ['sh', '-c', 'echo out; echo err >&2'] });

  await waitFor(() => seenAtCompletion.has(unclaimed), 'the unclaimed request to complete');
  t.strictSame(
    seenAtCompletion.get(unclaimed),
    { result: true, logs: [`${unclaimed}.pid`, `${unclaimed}.stderr`, `${unclaimed}.stdout`] },
    'when it completed, its result and its logs were on disk',
  );

  await waitFor(() => !existsSync(join(spool, 'complete', unclaimed)), 'the unclaimed result to expire');
  t.strictSame(readdirSync(logs).filter((n) => n.startsWith(unclaimed)), [], "the expired result's logs went with it");
  await waitFor(() => !existsSync(staleTemp), 'the stale temp file to be removed');
  await waitFor(() => !existsSync(orphanLog), 'the orphaned log to be removed');

  t.strictSame(
    readdirSync(logs).filter((n) => n.startsWith(running)).sort(),
    [`${running}.pid`, `${running}.stderr`, `${running}.stdout`],
    'the logs of the running request are kept, though older than the leftover age',
  );
  t.ok(existsSync(join(spool, 'running', running)), 'the running request is untouched');

  t.equal(housekept(calls, 'expiredResults'), 1, "'housekeeping' lines count the expired result");
  t.equal(housekept(calls, 'staleTemps'), 1, "'housekeeping' lines count the stale temp");
  t.equal(housekept(calls, 'orphanLogs'), 1, "'housekeeping' lines count the orphaned log");
  const line = calls.find((c) => c.message === 'housekeeping');
  t.equal(line?.level, 'info', 'housekeeping logs at info');
  t.strictSame(Object.keys(line?.fields ?? {}).sort(), ['expiredResults', 'orphanLogs', 'staleTemps'], 'with the three counts');
  t.notOk(calls.some((c) => c.message === 'housekeeping failed; will retry'), 'housekeeping never failed');
});

t.test('a result within its TTL stays while a stale temp file goes', async (t) => {
  const dir = realpathSync(t.testdir());
  const spool = join(dir, 'spool');
  const { logger, calls } = recordingLogger();
  startServer(t, new CommandTaskManager({ logDir: join(spool, 'logs') }), {
    spool,
    logger,
    resultTtlMs: 600_000,
    leftoverMaxAgeMs: 1,
    housekeepingIntervalMs: 1,
    rescanIntervalMs: 10,
  });
  const client = new WorkQueueClient({ spool });
  t.teardown(() => client.close());
  const id = await client.enqueue({ argv: ['sh', '-c', 'echo kept'] });
  await waitFor(() => existsSync(join(spool, 'complete', id)), 'the result');
  const temp = join(spool, 'tmp', 'request.999999.0123456789ab');
  writeFileSync(temp, '');
  await waitFor(() => !existsSync(temp), 'a housekeeping pass to remove the temp file');
  t.ok(existsSync(join(spool, 'complete', id)), 'the result, younger than its TTL, is still there');
  t.strictSame(readdirSync(join(spool, 'logs')).filter((n) => n.startsWith(id)).sort(), [`${id}.pid`, `${id}.stderr`, `${id}.stdout`], 'and so are its logs');
  t.equal(housekept(calls, 'expiredResults'), 0);
  t.equal(housekept(calls, 'orphanLogs'), 0);
  t.equal(housekept(calls, 'staleTemps'), 1);
  t.equal(await client.wait(id).then((v) => Buffer.from((v as { stdout: Uint8Array }).stdout).toString()), 'kept\n', 'and can still be claimed');
});
