import t, { type Test } from 'tap';
import { EventEmitter } from 'node:events';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { resolveClientOptions, WorkQueueClient } from '../src/client.js';
import { InvalidOptionError, ProtocolError, RequestTooLargeError, UnknownRequestError, WorkQueueCancelledError, WorkQueueTimeoutError } from '../src/errors.js';
import { MAX_REQUEST_BYTES } from '../src/spool/codec.js';
import { formatRequestId, type IdSource } from '../src/spool/request-id.js';
import { InProcessTaskManager } from '../src/task-manager/in-process.js';
import type { TaskManager, TaskOutcome } from '../src/task-manager/types.js';
import { spoolContents, startServer, waitFor } from './fixtures/helpers.js';
import { ScriptedTaskManager } from './fixtures/scripted-manager.js';
import { RecordingLogger } from './fixtures/hostile.js';
import { silentLogger } from '../src/logger.js';

/** A promise the test resolves when it chooses: a task that finishes on cue. */
function gate<T = void>(): { promise: Promise<T>; open(value: T): void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => (open = resolve));
  return { promise, open };
}

/** Capacity and completion decided by the test (the server's tests use a fuller one). */

/**
 * A fresh spool path in the test's own directory. tap removes that directory
 * before running teardowns registered after the first testdir() call, which would
 * pull the spool from under a running server; registering a teardown first makes
 * the servers stop (startServer's teardown) before the directory goes.
 */
function spoolDir(t: Test): string {
  t.teardown(() => {});
  return join(t.testdir(), 'spool');
}

function makeClient(t: Test, spool: string, extra: { watch?: boolean; idSource?: IdSource; recheckIntervalMs?: number } = {}): WorkQueueClient {
  const client = new WorkQueueClient({ spool, recheckIntervalMs: 50, ...extra });
  t.teardown(() => client.close());
  return client;
}

t.test('resolveClientOptions fills defaults and validates', async (t) => {
  t.strictSame(resolveClientOptions({ spool: '/s' }), { watch: true, recheckIntervalMs: 1000, durable: false, logger: silentLogger, spool: '/s', idSource: undefined });
  const source: IdSource = { nowMicros: () => 1, suffix: () => '000000000000' };
  t.match(resolveClientOptions({ spool: '/s', watch: false, recheckIntervalMs: 5, durable: true, idSource: source }), { watch: false, recheckIntervalMs: 5, durable: true, idSource: source });
  t.equal(resolveClientOptions({ spool: '/s', recheckIntervalMs: undefined, watch: undefined }).recheckIntervalMs, 1000, 'undefined means the default');
  t.equal(resolveClientOptions({ spool: '/s', watch: undefined }).watch, true);

  for (const spool of ['', undefined, 42, null]) {
    t.throws(() => resolveClientOptions({ spool } as unknown as { spool: string }), { name: 'InvalidOptionError', code: 'ERR_INVALID_OPTION', message: /Expected `spool` to be a non-empty string/ }, `spool ${String(spool)}`);
  }
  for (const recheckIntervalMs of [0, -1, Number.NaN, Infinity, 2 ** 31, '100']) {
    t.throws(
      () => resolveClientOptions({ spool: '/s', recheckIntervalMs } as unknown as { spool: string }),
      { name: 'InvalidOptionError', message: new RegExp(`Expected \`recheckIntervalMs\` to be a finite number > 0 and <= 2147483647, got \`${String(recheckIntervalMs)}\``) },
      `recheckIntervalMs ${String(recheckIntervalMs)}`,
    );
  }
  t.throws(() => new WorkQueueClient({ spool: '' }), InvalidOptionError, 'the constructor validates');
});

t.test('a client touches the disk only when used', async (t) => {
  const spool = spoolDir(t);
  const client = makeClient(t, spool);
  t.notOk(existsSync(spool), 'constructing creates nothing');
  const id = await client.enqueue('x');
  t.ok(existsSync(join(spool, 'requested', id)), 'enqueue creates the spool and publishes the request');
  t.strictSame(spoolContents(spool).tmp, [], 'no temp file left behind');
});

t.test('bad arguments are refused before anything is written', async (t) => {
  const spool = spoolDir(t);
  const client = makeClient(t, spool);
  await t.rejects(client.enqueue(new Map()), ProtocolError, 'a Map');
  await t.rejects(client.enqueue({ f: () => 1 }), ProtocolError, 'a function');
  await t.rejects(client.enqueue('x'.repeat(MAX_REQUEST_BYTES)), RequestTooLargeError, 'too large: a ProtocolError that says so');
  await t.rejects(client.enqueue('x', { runTimeoutMs: -1 }), InvalidOptionError, 'a negative run timeout');
  await t.rejects(client.abort('not-an-id'), InvalidOptionError, 'abort checks the id');
  await t.rejects(client.abort('../../etc/passwd'), InvalidOptionError, 'abort does not take paths');
  await t.rejects(client.wait('1795366421947895-8d42b22ad81'), InvalidOptionError, 'wait checks the id');
  const id = await client.enqueue('ok');
  await t.rejects(client.wait(id, { timeoutMs: -1 }), InvalidOptionError, 'a negative timeout');
  await t.rejects(client.wait(id, { timeoutMs: Number.NaN }), InvalidOptionError, 'a NaN timeout');
  t.throws(() => client.state('nope'), InvalidOptionError, 'state checks the id');
  const left = spoolContents(spool);
  t.strictSame(left.requested, [id], 'only the good request was published');
  t.strictSame(left.tmp, [], 'no temp files');
  t.strictSame(left.aborting, []);
});

t.test('enqueue retries on a taken id and gives up after 100 tries', async (t) => {
  const spool = spoolDir(t);
  const micros = 1_800_000_000_000_000;
  const stuck = (): IdSource => ({ nowMicros: () => micros, suffix: () => 'feedfeedfeed' });
  const first = makeClient(t, spool, { idSource: stuck() });
  await first.enqueue('occupies the first id');
  const second = makeClient(t, spool, { idSource: stuck() });
  const id = await second.enqueue('skips it');
  t.equal(id, formatRequestId(micros + 1, 'feedfeedfeed'), 'the next free id');

  for (let i = 2; i < 102; i++) writeFileSync(join(spool, 'requested', formatRequestId(micros + i, 'feedfeedfeed')), 'taken');
  const third = makeClient(t, spool, { idSource: stuck() });
  await t.rejects(third.enqueue('no room'), { code: 'ERR_ID_EXHAUSTED' });
  t.strictSame(spoolContents(spool).tmp, [], 'the temp file is removed even then');
});

t.test('state() reports each state a request passes through', async (t) => {
  const spool = spoolDir(t);
  const client = makeClient(t, spool);
  const id = await client.enqueue('x');
  t.equal(client.state(id), 'requested', 'before any server');
  const manager = new ScriptedTaskManager();
  startServer(t, manager, { spool, rescanIntervalMs: 50 });
  await waitFor(() => client.state(id) === 'pending', 'pending');
  t.equal(client.state(id), 'pending');
  manager.setCapacity(1);
  await waitFor(() => client.state(id) === 'running', 'running');
  t.strictSame(manager.startedIds, [id]);
  manager.finish(id, { ok: true, value: 'value' });
  await waitFor(() => client.state(id) === 'complete', 'complete');
  t.equal(await client.wait(id), 'value');
  t.equal(client.state(id), undefined, 'claimed: in no state');
  t.equal(client.state(formatRequestId(1_700_000_000_000_000, '000000000000')), undefined, 'never enqueued');
});

t.test('two waits for one result: exactly one gets it, the other hears "unknown"', async (t) => {
  for (const shape of ['one client', 'two clients', 'two clients, no watch'] as const) {
    await t.test(shape, async (t) => {
      const spool = spoolDir(t);
      const release = gate<string>();
      const manager = new InProcessTaskManager(() => release.promise);
      startServer(t, manager, { spool, rescanIntervalMs: 50 });
      const a = makeClient(t, spool, { watch: shape !== 'two clients, no watch' });
      const b = shape === 'one client' ? a : makeClient(t, spool, { watch: shape !== 'two clients, no watch' });
      const id = await a.enqueue('once');
      await waitFor(() => a.state(id) === 'running', 'running');
      const waits = [a.wait(id), b.wait(id)];
      release.open('the only copy');
      const settled = await Promise.allSettled(waits);
      const won = settled.filter((s) => s.status === 'fulfilled');
      const lost = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
      t.equal(won.length, 1, 'one waiter gets the result');
      t.equal((won[0] as PromiseFulfilledResult<unknown> | undefined)?.value, 'the only copy');
      t.equal(lost.length, 1, 'the other does not');
      t.type(lost[0]?.reason, UnknownRequestError);
      t.strictSame(spoolContents(spool).complete, []);
    });
  }
});

t.test('watch: false polls and still completes', async (t) => {
  const spool = spoolDir(t);
  const manager = new InProcessTaskManager((req: { n: number }) => req.n + 1, { maxTasks: 2 });
  startServer(t, manager, { spool, rescanIntervalMs: 50 });
  const client = makeClient(t, spool, { watch: false, recheckIntervalMs: 20 });
  const ids = await Promise.all([1, 2, 3].map((n) => client.enqueue({ n })));
  t.strictSame(await Promise.all(ids.map((id) => client.wait(id))), [2, 3, 4]);
  t.equal(await client.run({ n: 41 }), 42, 'run() too');
  t.strictSame(spoolContents(spool).complete, []);
});

t.test('a wait started after the result is published claims it at once', async (t) => {
  const spool = spoolDir(t);
  const manager = new ScriptedTaskManager();
  manager.capacity = 1;
  startServer(t, manager, { spool, rescanIntervalMs: 50 });
  // A poll period far beyond the test's time: only the first, immediate check can find it.
  const client = makeClient(t, spool, { watch: false, recheckIntervalMs: 3_600_000 });
  const id = await client.enqueue('x');
  await waitFor(() => manager.started.length === 1, 'started');
  manager.finish(id, { ok: true, value: 'ready' });
  await waitFor(() => client.state(id) === 'complete', 'published');
  t.equal(await client.wait(id), 'ready');
});

/**
 * WorkQueueClient on a spool queue whose spool/fs.ts is `fs`. t.mockImport
 * replaces a module only for the module imported directly, so the queue is
 * built from the bottom: its result waits on `fs`, the queue on those, then
 * the client on a factory that opens that queue.
 */
async function clientOnFs(t: Test, fs: Record<string, unknown>): Promise<typeof WorkQueueClient> {
  const waits = await t.mockImport<typeof import('../src/spool/result-waits.js')>('../src/spool/result-waits.js', { '../src/spool/fs.js': fs });
  const { SpoolQueue } = await t.mockImport<typeof import('../src/spool/queue.js')>('../src/spool/queue.js', { '../src/spool/fs.js': fs, '../src/spool/result-waits.js': waits });
  const { WorkQueueClient: MockedClient } = await t.mockImport<typeof import('../src/client.js')>('../src/client.js', {
    '../src/backends.js': { openQueue: (options: import('../src/spool/queue.js').SpoolQueueOptions) => new SpoolQueue(options) },
  });
  return MockedClient;
}

t.test('a broken watcher falls back to the re-check', async (t) => {
  const sfs = await import('../src/spool/fs.js');
  let watches = 0;
  const MockedClient = await clientOnFs(t, {
    ...sfs,
    // A watch that dies at once, as it does when complete/ is replaced or the inotify limit is hit.
    watchDirectory: (_dir: string, _onName: unknown, onError: (err: Error) => void) => {
      watches++;
      const fake = Object.assign(new EventEmitter(), { close() {}, ref() {}, unref() {} });
      setImmediate(() => onError(Object.assign(new Error('ENOSPC: System limit for number of file watchers reached'), { code: 'ENOSPC' })));
      return fake;
    },
  });
  const spool = spoolDir(t);
  startServer(t, new InProcessTaskManager((req: string) => req.toUpperCase()), { spool, rescanIntervalMs: 50 });
  const client = new MockedClient({ spool, recheckIntervalMs: 20 });
  t.teardown(() => client.close());
  t.equal(await client.run('still works'), 'STILL WORKS');
  t.equal(await client.run('and again'), 'AND AGAIN');
  t.ok(watches >= 1, 'the client did try to watch');
});

t.test('a watch that cannot be set up (ENOSPC: inotify watches used up) falls back to the re-check, said once', async (t) => {
  const sfs = await import('../src/spool/fs.js');
  let watches = 0;
  const MockedClient = await clientOnFs(t, {
    ...sfs,
    watchDirectory: (dir: string) => {
      watches++;
      throw Object.assign(new Error(`ENOSPC: System limit for number of file watchers reached, watch '${dir}'`), { code: 'ENOSPC', syscall: 'watch' });
    },
  });
  const spool = spoolDir(t);
  startServer(t, new InProcessTaskManager((req: string) => req.toUpperCase()), { spool, rescanIntervalMs: 50 });
  const logger = new RecordingLogger();
  const client = new MockedClient({ spool, recheckIntervalMs: 20, logger });
  t.teardown(() => client.close());
  t.equal(await client.run('still works'), 'STILL WORKS');
  t.equal(await client.run('and again'), 'AND AGAIN');
  t.equal(watches, 2, 'each wait tried to watch again');
  t.match(logger.lines, [{ level: 'warn', message: /^cannot watch \S+\/complete for results \(ENOSPC: .*\); checking every 0\.02 s instead$/ }], 'said once');
});

t.test('a cancelled wait aborts the request, unless abortOnCancel is false', async (t) => {
  const spool = spoolDir(t);
  const client = makeClient(t, spool);
  for (const abortOnCancel of [true, false]) {
    const id = await client.enqueue(abortOnCancel);
    const controller = new AbortController();
    const waiting = client.wait(id, { signal: controller.signal, abortOnCancel });
    controller.abort('SIGTERM');
    const err = await waiting.then(
      () => undefined,
      (e: unknown) => e,
    );
    t.type(err, WorkQueueCancelledError);
    t.match(err, { requestId: id, requestAborted: abortOnCancel, cause: 'SIGTERM' });
    t.equal(spoolContents(spool).aborting.includes(id), abortOnCancel, abortOnCancel ? 'an abort was filed' : 'no abort: the request stays queued');
  }
});

t.test('waiting for an aborted request reports it unknown, and the abort is filed once', async (t) => {
  const spool = spoolDir(t);
  const client = makeClient(t, spool);
  const id = await client.enqueue('x');
  await client.abort(id);
  await client.abort(id, 'timeout'); // a second abort is as good as the first
  t.strictSame(spoolContents(spool).aborting, [id]);
  t.strictSame(readdirSync(join(spool, 'tmp')), [], 'no temp files left by either abort');
  const manager = new ScriptedTaskManager();
  manager.capacity = 1;
  startServer(t, manager, { spool, rescanIntervalMs: 50 });
  await t.rejects(client.wait(id), UnknownRequestError);
  t.strictSame(manager.started, []);
});

t.test('peek() and wait({ keep }) read a result without claiming it; neither ever aborts', async (t) => {
  const spool = spoolDir(t);
  const client = makeClient(t, spool);
  const id = await client.enqueue('x');
  t.equal(await client.peek(id), undefined, 'queued: nothing to read yet');
  await t.rejects(client.peek(formatRequestId(1_700_000_000_000_000, '000000000000')), UnknownRequestError, 'never enqueued');

  const timedOut = await client.waitForResult(id, { keep: true, timeoutMs: 0 }).catch((e: unknown) => e);
  t.type(timedOut, WorkQueueTimeoutError);
  t.match(timedOut, { requestId: id, requestAborted: false, message: /it was left in the spool/ });
  const controller = new AbortController();
  const cancelled = client.waitForResult(id, { keep: true, signal: controller.signal }).catch((e: unknown) => e);
  controller.abort('SIGINT');
  t.match(await cancelled, { requestAborted: false });
  t.strictSame(spoolContents(spool).aborting, [], 'no abort filed by either');

  const manager = new ScriptedTaskManager();
  manager.capacity = 1;
  startServer(t, manager, { spool, rescanIntervalMs: 50 });
  const kept = client.waitForResult(id, { keep: true });
  await waitFor(() => manager.startedIds.includes(id), 'the task to start');
  manager.finish(id, { ok: true, value: 'value' });
  t.match(await kept, { id, ok: true, status: 'normal', value: 'value' });
  t.match(await client.peek(id), { id, value: 'value' });
  t.strictSame(spoolContents(spool).complete, [id], 'still there');
  t.equal(await client.wait(id), 'value', 'a wait claims it');
  await t.rejects(client.peek(id), UnknownRequestError, 'claimed: unknown');
});

t.test('abort() takes several ids, checked before any is filed; abortAll() aborts what this user has queued', async (t) => {
  const spool = spoolDir(t);
  const client = makeClient(t, spool);
  const ids = [await client.enqueue(1), await client.enqueue(2), await client.enqueue(3)];
  await t.rejects(client.abort([ids[0]!, 'not-an-id']), InvalidOptionError);
  t.strictSame(spoolContents(spool).aborting, [], 'nothing filed for a list with a bad id');
  await client.abort([ids[0]!, ids[1]!]);
  t.strictSame(spoolContents(spool).aborting, [ids[0], ids[1]]);
  t.strictSame(await client.abortAll(), ids, 'every request of ours, oldest first (an abort already filed is harmless)');
  t.strictSame(spoolContents(spool).aborting, ids);
});

t.test('what appears at complete/<id> while a client waits is used only if it is a regular file holding its result: a FIFO, symlink or directory is reported once, never blocks, and the wait goes on', async (t) => {
  // The watcher's event makes the client open complete/<id> at once (no lstat
  // first): O_NONBLOCK and O_NOFOLLOW, then fstat, must still refuse these.
  for (const kind of ['fifo', 'symlink', 'directory'] as const) {
    const spool = spoolDir(t);
    const logger = new RecordingLogger();
    const client = new WorkQueueClient({ spool, recheckIntervalMs: 100, logger }); // the watcher or the re-check: both open complete/<id> at once
    t.teardown(() => client.close());
    const id = await client.enqueue(kind);
    const waiting = client.wait(id);
    const path = join(spool, 'complete', id);
    if (kind === 'fifo') t.equal(spawnSync('mkfifo', [path]).status, 0, 'mkfifo');
    else if (kind === 'symlink') symlinkSync(join(spool, 'requested', id), path); // a readable regular file behind it
    else mkdirSync(path);
    await waitFor(() => logger.lines.some((line) => line.level === 'warn'), `${kind}: the client to report it`);
    t.match(logger.lines, [{ level: 'warn', message: /^ignoring complete\/\S+, which is not this request's result from the server \(.*regular files\); still waiting$/, fields: { id } }], `${kind}: reported`);
    // The server replaces the planted entry with the real result.
    startServer(t, new InProcessTaskManager((request: string) => `ran ${request}`), { spool, rescanIntervalMs: 50 });
    t.equal(await waiting, `ran ${kind}`, `${kind}: the real result`);
    t.equal(logger.lines.filter((line) => line.level === 'warn').length, 1, `${kind}: reported once`);
  }
});

t.test('a wait finds a result that arrived between enqueue() and wait(), with or without a watcher live at enqueue, without the safety re-check', async (t) => {
  const spool = spoolDir(t);
  startServer(t, new InProcessTaskManager((req: unknown) => ({ echo: req }), { maxTasks: 2 }), { spool });
  // The re-check is 10 minutes away: only a look at wait() or a watcher event can find these results.
  const client = makeClient(t, spool, { recheckIntervalMs: 600_000 });
  const beforeAnyWatch = await client.enqueue('first');
  await waitFor(() => spoolContents(spool).complete.includes(beforeAnyWatch), 'the first result');
  t.strictSame(await client.wait(beforeAnyWatch), { echo: 'first' }, 'no watcher yet when it was published: wait() looks');
  // Now the watcher of complete/ is live: its event for the next result comes while nobody waits.
  const meanwhile = await client.enqueue('second');
  await waitFor(() => spoolContents(spool).complete.includes(meanwhile), 'the second result');
  await new Promise((resolve) => setTimeout(resolve, 50)); // let the watcher's event be handled first
  const late = await Promise.race([client.wait(meanwhile), new Promise((resolve) => setTimeout(() => resolve('not found'), 5000))]);
  t.strictSame(late, { echo: 'second' }, 'the watcher saw it arrive: wait() reads it at once');
  const direct = await Promise.race([client.run('third'), new Promise((resolve) => setTimeout(() => resolve('not found'), 5000))]);
  t.strictSame(direct, { echo: 'third' }, 'and run() gets its result from the event');
});
