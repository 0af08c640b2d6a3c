/**
 * What a starting server does with the tasks a dead one left running, on plain
 * data: judgeOrphan's verdicts (reused pids, zombies, another boot), the
 * process record's codec, and Orphans driven by a scripted process table,
 * including a group it may not kill (EPERM).
 */
import { realpathSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { judgeOrphan, type GroupObservation, type TaskProcessRecord } from '../../../src/protocol.js';
import { Orphans, ORPHAN_SETTLE_MS, type GroupKillResult, type ProcessProbe } from '../../../src/spool/server/orphans.js';
import { openSpool, processRecordPath } from '../../../src/spool/layout.js';
import { decodeProcessRecord, encodeProcessRecord } from '../../../src/spool/process-record.js';
import { existsSync, writeFileSync } from 'node:fs';
import { RecordingLogger } from '../../fixtures/hostile.js';

const BOOT = 'b0075-1d';
const RECORD: TaskProcessRecord = { pid: 4242, startTicks: 1000, bootId: BOOT };
const member = (pid: number, startTicks: number, zombie = false) => ({ pid, startTicks, zombie });

t.test('judgeOrphan: alive only when a live process of the recorded group started no earlier than its leader, on this boot', async (t) => {
  const cases: Array<[string, GroupObservation, string | undefined, ReturnType<typeof judgeOrphan>]> = [
    ['leader and a grandchild alive', { leader: { startTicks: 1000, zombie: false }, members: [member(4242, 1000), member(4250, 1003)] }, BOOT, { kind: 'alive', pids: [4242, 4250] }],
    ['leader gone, a grandchild alive', { members: [member(4250, 1003)] }, BOOT, { kind: 'alive', pids: [4250] }],
    ['only zombies left', { leader: { startTicks: 1000, zombie: true }, members: [member(4242, 1000, true), member(4250, 1003, true)] }, BOOT, { kind: 'gone', why: 'no process of its group is left' }],
    ['nothing left', { members: [] }, BOOT, { kind: 'gone', why: 'no process of its group is left' }],
    ['the pid reused by a later process', { leader: { startTicks: 9000, zombie: false }, members: [member(4242, 9000)] }, BOOT, { kind: 'gone', why: 'its pid now belongs to another process' }],
    ['a member older than the leader is not the task\'s', { members: [member(4250, 900)] }, BOOT, { kind: 'gone', why: 'no process of its group is left' }],
    ['another boot', { leader: { startTicks: 1000, zombie: false }, members: [member(4242, 1000)] }, 'another-boot', { kind: 'gone', why: 'the machine rebooted since it started' }],
  ];
  for (const [what, observed, boot, verdict] of cases) t.strictSame(judgeOrphan(RECORD, boot, observed), verdict, what);
});

t.test('a process record round-trips; anything else, or one naming pid 0 or 1, reads as no record', async (t) => {
  t.strictSame(decodeProcessRecord(encodeProcessRecord(RECORD)), RECORD);
  for (const bad of ['', '{"v":1,"pid":4242', '{"v":2,"pid":4242,"startTicks":1,"bootId":"x"}', '{"v":1,"pid":1,"startTicks":1,"bootId":"x"}', '{"v":1,"pid":0,"startTicks":1,"bootId":"x"}', '{"v":1,"pid":-5,"startTicks":1,"bootId":"x"}', '{"v":1,"pid":4242,"startTicks":-1,"bootId":"x"}', '[1]', 'null']) {
    t.equal(decodeProcessRecord(Buffer.from(bad)), undefined, JSON.stringify(bad));
  }
});

/** A scripted process table: groups alive until told otherwise; kills obey `killResult`. */
class ScriptedProbe implements ProcessProbe {
  readonly alive = new Map<number, number[]>();
  killResult: GroupKillResult = 'sent';
  /** Whether a SIGKILL actually removes the group. */
  killWorks = true;
  kills: number[] = [];
  bootId = () => BOOT;
  startTicks = (pid: number) => (this.alive.has(pid) ? 1000 : undefined);
  observe = (pgid: number): GroupObservation => {
    const pids = this.alive.get(pgid) ?? [];
    return { members: pids.map((pid) => member(pid, 1000)) };
  };
  killGroup = (pgid: number): GroupKillResult => {
    this.kills.push(pgid);
    if (!this.alive.has(pgid)) return 'gone';
    if (this.killResult === 'sent' && this.killWorks) this.alive.delete(pgid);
    return this.killResult;
  };
}

function setUp(t: Test) {
  const paths = openSpool(join(realpathSync(t.testdir()), 'spool'));
  const probe = new ScriptedProbe();
  let now = 0;
  const log = new RecordingLogger();
  const orphans = new Orphans<string>(paths, log, probe, () => now);
  return { paths, probe, orphans, log, advance: (ms: number) => (now += ms) };
}

const ID = '1700000000000001-00000000000a';

t.test('Orphans: a recorded group still alive is killed and held until gone; then its step goes ahead and the record is removed', async (t) => {
  const { paths, probe, orphans } = setUp(t);
  probe.alive.set(4242, [4242, 4250]);
  orphans.record(ID, 4242);
  t.ok(existsSync(processRecordPath(paths, ID)), 'the record is written');
  probe.killWorks = false; // the SIGKILL is on its way, the group not gone yet
  t.equal(orphans.settle(ID, 'requeue'), false, 'held: its request must wait');
  t.strictSame(probe.kills, [4242], 'its group was sent SIGKILL');
  t.equal(orphans.size, 1, 'it holds a slot');
  t.ok(orphans.settling, 'nothing starts while it is about to go');
  t.strictSame(orphans.recheck(false), [], 'still there');
  probe.alive.delete(4242);
  t.strictSame(orphans.recheck(false), [[ID, 'requeue']], 'gone: its step goes ahead');
  t.equal(orphans.size, 0);
  t.notOk(existsSync(processRecordPath(paths, ID)), 'the record is removed');
});

t.test('Orphans: a group it may not kill (EPERM) stays held, counts against capacity, and is not released while it lives', async (t) => {
  const { probe, orphans, log, advance } = setUp(t);
  probe.alive.set(4242, [4242]);
  orphans.record(ID, 4242);
  probe.killResult = 'denied';
  t.equal(orphans.settle(ID, 'requeue'), false);
  t.equal(orphans.size, 1, 'it holds a slot');
  t.notOk(orphans.settling, 'it does not hold up other requests: it may live for long');
  t.match(log.lines.map((l) => l.message).join('\n'), /may not kill the task the previous server left running \(EPERM\)/);
  advance(ORPHAN_SETTLE_MS * 10);
  t.strictSame(orphans.recheck(false), [], 'not looked at between periodic rescans');
  t.strictSame(orphans.recheck(true), [], 'still alive at a rescan: still held');
  t.equal(orphans.size, 1);
  probe.alive.delete(4242); // it ended on its own, or its owner killed it
  t.strictSame(orphans.recheck(true), [[ID, 'requeue']], 'released once gone');
});

t.test('Orphans: a group that does not die within the settle time stops holding up the queue, and stays held', async (t) => {
  const { probe, orphans, log, advance } = setUp(t);
  probe.alive.set(4242, [4242]);
  orphans.record(ID, 4242);
  probe.killWorks = false;
  t.equal(orphans.settle(ID, 'fail'), false);
  advance(ORPHAN_SETTLE_MS);
  t.strictSame(orphans.recheck(false), []);
  t.notOk(orphans.settling, 'no longer holds up other requests');
  t.equal(orphans.size, 1, 'but still holds its slot');
  t.match(log.lines.map((l) => l.message).join('\n'), /does not die/);
});

t.test('Orphans: no record, a torn one, or a group already gone: the step goes ahead at once', async (t) => {
  const { paths, orphans, log } = setUp(t);
  t.equal(orphans.settle(ID, 'requeue'), true, 'no record');
  writeFileSync(processRecordPath(paths, ID), '{"v":1,"pid":1,');
  t.equal(orphans.settle(ID, 'requeue'), true, 'a torn record');
  t.notOk(existsSync(processRecordPath(paths, ID)), 'removed');
  t.match(log.lines.map((l) => l.message).join('\n'), /ignored an invalid process record/);
  writeFileSync(processRecordPath(paths, ID), encodeProcessRecord(RECORD));
  t.equal(orphans.settle(ID, 'requeue'), true, 'a record whose group is gone');
  t.notOk(existsSync(processRecordPath(paths, ID)), 'removed');
});
