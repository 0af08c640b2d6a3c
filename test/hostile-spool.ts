/**
 * Hostile and broken spools: a foreign or planted `format` file or lock, state
 * directories that are symlinks (at start, or swapped in while serving), the
 * spool removed or replaced under a running server, a state directory removed,
 * and request files the server may not read.
 *
 * The policy:
 * - a spool whose `format` file is another version, foreign, or not a regular
 *   file is refused before anything is touched;
 * - a state directory that is not a real directory (a symlink, even to a
 *   directory) is refused at start; found at a tick, the server stops with
 *   SpoolError before it moves anything (its tasks run again at the next start);
 * - the spool removed or replaced (its lock goes with it): the server stops with
 *   SpoolError, and a supervisor restarts it on whatever is there then;
 * - a state directory removed (a tmp cleaner): reported at once, recreated with
 *   its mode if still missing at the next periodic rescan, and watched again;
 *   serving goes on;
 * - a request file the server may not read (its directory is fine): rejected.
 */
import t from 'tap';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, renameSync, rmdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WorkQueueServer } from '../src/server.js';
import { encodeRequest } from '../src/spool/codec.js';
import { openSpool, SPOOL_DIRS } from '../src/spool/layout.js';
import { spoolContents, startServer, waitFor } from './fixtures/helpers.js';
import { FaultSwitch, loadFaultyServer, startServerFrom } from './fixtures/faulty-fs.js';
import { GatedManager, makeOutside, mkfifo, plantedId, plantFile, RecordingLogger, spoolIn, testClient, trackSettled, watchEscapes } from './fixtures/hostile.js';

const isRoot = process.getuid?.() === 0;

/** Every name under a directory, recursively, with file sizes: to prove nothing changed. */
function tree(dir: string): string {
  return JSON.stringify(
    readdirSync(dir, { recursive: true })
      .map(String)
      .sort()
      .map((name) => {
        const stat = statSync(join(dir, name), { throwIfNoEntry: false });
        return `${name}:${stat?.isFile() ? stat.size : (stat?.isDirectory() ? 'dir' : 'other')}`;
      }),
  );
}

/**
 * Starts a server that should refuse the spool; resolves with what it threw. One
 * that starts instead is stopped after 10 s and reported as an Error saying so.
 */
async function refusal(spool: string, manager: GatedManager): Promise<unknown> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 10_000);
  try {
    return await new WorkQueueServer({ spool }).processRequests(manager, { signal: controller.signal }).then(
      () => new Error('the server started instead of refusing the spool'),
      (err: unknown) => err,
    );
  } finally {
    clearTimeout(timer);
  }
}

/** What the server's run ended with; an Error saying so if it is still running after 15 s. */
async function ending(done: Promise<void>): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<Error>((resolve) => (timer = setTimeout(() => resolve(new Error('the server is still running')), 15_000)));
  try {
    return await Promise.race([done.then(() => new Error('the server stopped without an error'), (err: unknown) => err), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** A spool laid out by hand (no format file yet), holding one valid request. */
function handMadeSpool(spool: string): string {
  for (const dir of SPOOL_DIRS) mkdirSync(join(spool, dir), { recursive: true });
  const id = plantedId(1);
  writeFileSync(join(spool, 'requested', id), encodeRequest({ body: 'kept', submittedAt: 1, client: { pid: 1, host: 'h' } }));
  return id;
}

t.test('a spool whose format file is another version, foreign, or not a regular file is refused untouched', async (t) => {
  const variants: Record<string, (path: string, root: string) => void> = {
    'another version': (path) => writeFileSync(path, 'spool-workqueue protocol 2\n'),
    foreign: (path) => writeFileSync(path, 'some other program\n'),
    garbage: (path) => writeFileSync(path, Buffer.from([0xff, 0x00, 0xfe])),
    'a FIFO': (path) => mkfifo(path),
    'a symlink to a valid format file outside': (path, root) => {
      writeFileSync(join(root, 'outside-format'), 'spool-workqueue protocol 1\n');
      symlinkSync(join(root, 'outside-format'), path);
    },
    'a directory': (path) => mkdirSync(path),
    'oversized': (path) => writeFileSync(path, `spool-workqueue protocol 1\n${' '.repeat(1 << 20)}`),
  };
  for (const [what, make] of Object.entries(variants)) {
    await t.test(what, async (t) => {
      const { root, spool } = spoolIn(t);
      handMadeSpool(spool);
      make(join(spool, 'format'), root);
      const before = tree(spool);
      const manager = new GatedManager(1);
      t.match(await refusal(spool, manager), { name: 'SpoolError', code: 'ERR_SPOOL' });
      t.equal(tree(spool), before, 'nothing in the spool changed (no lock, no move)');
      t.strictSame(manager.calls, []);
    });
  }
});

t.test('a planted server.lock that is a FIFO, a symlink out of the spool, or an empty directory is treated as a dead lock', async (t) => {
  const kinds: Record<string, (path: string, outside: ReturnType<typeof makeOutside>) => void> = {
    'a FIFO': (path) => mkfifo(path),
    'a symlink to a file outside': (path, outside) => symlinkSync(outside.file, path),
    'a dangling symlink': (path, outside) => symlinkSync(join(outside.dir, 'created-through-a-symlink'), path),
    'an empty directory': (path) => mkdirSync(path),
    garbage: (path) => writeFileSync(path, '\u0000not json'),
  };
  for (const [what, make] of Object.entries(kinds)) {
    await t.test(what, async (t) => {
      const { root, spool } = spoolIn(t);
      const outside = makeOutside(root);
      const before = outside.snapshot();
      openSpool(spool);
      make(join(spool, 'server.lock'), outside);
      startServer(t, new GatedManager(1, (r) => r, false), { spool, rescanIntervalMs: 20 });
      t.equal(await testClient(t, spool).run('served', { timeoutMs: 10_000 }), 'served');
      t.equal(outside.snapshot(), before, 'nothing outside the spool changed');
      t.notOk(existsSync(join(outside.dir, 'created-through-a-symlink')));
    });
  }
});

t.test('a state directory that is a symlink is refused at start, even one pointing at a directory', async (t) => {
  for (const dir of SPOOL_DIRS) {
    await t.test(dir, async (t) => {
      const { root, spool } = spoolIn(t);
      const id = handMadeSpool(spool);
      openSpool(spool);
      const elsewhere = join(root, `elsewhere-${dir}`);
      renameSync(join(spool, dir), elsewhere); // with its contents: a request, for requested/
      symlinkSync(elsewhere, join(spool, dir));
      const before = tree(elsewhere);
      const manager = new GatedManager(1, (r) => r, false);
      t.match(await refusal(spool, manager), { name: 'SpoolError', message: new RegExp(`${dir}/`) });
      t.equal(tree(elsewhere), before, 'nothing written or moved through the symlink');
      t.notOk(existsSync(join(spool, 'server.lock')), 'no lock left behind');
      t.strictSame(manager.calls, [], 'nothing ran');
      if (dir === 'requested') t.ok(existsSync(join(elsewhere, id)), 'the request behind the symlink is untouched');
    });
  }
});

t.test('a spool directory reached through a symlink is fine: only the directories inside must be real', async (t) => {
  const { root } = spoolIn(t);
  const real = join(root, 'real-spool');
  mkdirSync(real);
  symlinkSync(real, join(root, 'spool-link'));
  startServer(t, new GatedManager(1, (r) => r, false), { spool: join(root, 'spool-link'), rescanIntervalMs: 20 });
  t.equal(await testClient(t, join(root, 'spool-link')).run('through the link'), 'through the link');
});

t.test('pending/ swapped for a symlink while serving: the server stops before moving anything through it', async (t) => {
  const { root, spool } = spoolIn(t);
  const escaped = watchEscapes(t);
  const logger = new RecordingLogger();
  const manager = new GatedManager(0);
  // A long rescan period: the guard must hold at every tick, not only at the periodic rescan.
  const { done } = startServer(t, manager, { spool, rescanIntervalMs: 60_000, logger });
  const client = testClient(t, spool);
  const early = [await client.enqueue('a'), await client.enqueue('b')];
  await waitFor(() => spoolContents(spool).pending.length === 2, 'both pending');
  const elsewhere = join(root, 'elsewhere');
  mkdirSync(elsewhere);
  renameSync(join(spool, 'pending'), join(spool, 'pending.old'));
  symlinkSync(elsewhere, join(spool, 'pending'));
  const late = [await client.enqueue('c'), await client.enqueue('d')]; // the server would park these in pending/
  t.match(await ending(done), { name: 'SpoolError', code: 'ERR_SPOOL', message: /pending\/.*symbolic link/ });
  t.strictSame(readdirSync(elsewhere), [], 'nothing was moved through the symlink');
  t.strictSame(readdirSync(join(spool, 'pending.old')).sort(), early, 'the requests that were pending are intact');
  t.strictSame(spoolContents(spool).requested, late, 'the new ones are still in requested/');
  t.strictSame(escaped, [], 'nothing escaped as an uncaught exception');
  t.equal(logger.find(/symbolic link/).length, 1, 'the reason is logged once');
});

t.test('complete/ replaced while serving by a directory another user owns, in a sticky shared spool: the server stops before writing into it', { skip: !isRoot && 'needs root to give a directory to another user' }, async (t) => {
  const { root, spool } = spoolIn(t);
  const paths = openSpool(spool);
  chmodSync(spool, 0o1777); // shared and sticky: a member may rename only what they own
  const escaped = watchEscapes(t);
  const manager = new GatedManager(1, (r) => r);
  const { done } = startServer(t, manager, { spool, rescanIntervalMs: 60_000 });
  const id = await testClient(t, spool).enqueue('running');
  await waitFor(() => manager.waiting === 1, 'the task to run');
  // Replaced by hand, and given to a member (nobody): they could now swap it for a symlink out of the spool.
  renameSync(paths.dirs.complete, join(root, 'complete.old'));
  mkdirSync(paths.dirs.complete);
  chownSync(paths.dirs.complete, 65534, 65534);
  t.match(await ending(done), { name: 'SpoolError', code: 'ERR_SPOOL', message: /complete\/ is owned by uid 65534 in the shared directory/ });
  manager.release();
  t.strictSame(readdirSync(paths.dirs.complete), [], 'nothing was written into the directory the member owns');
  t.strictSame(readdirSync(paths.dirs.running), [id], 'the request stays in running/, to run again at the next start');
  t.strictSame(escaped, []);
});

t.test('the spool removed while serving: the server terminates its tasks and stops with SpoolError', async (t) => {
  const { spool } = spoolIn(t);
  const escaped = watchEscapes(t);
  const logger = new RecordingLogger();
  const aborted: string[] = [];
  const manager = new GatedManager(1, (r) => r);
  const { done } = startServer(t, manager, { spool, rescanIntervalMs: 20, logger });
  const client = testClient(t, spool);
  const running = await client.enqueue('running');
  await client.enqueue('pending');
  await waitFor(() => manager.waiting === 1 && spoolContents(spool).pending.length === 1, 'one running, one pending');
  const originalTerminate = manager.terminateTask.bind(manager);
  manager.terminateTask = (id: string) => {
    aborted.push(id);
    originalTerminate(id);
  };
  rmSync(spool, { recursive: true, force: true });
  t.match(await ending(done), { name: 'SpoolError', code: 'ERR_SPOOL', message: /removed or replaced/ });
  t.strictSame(aborted, [running], 'the running task was terminated');
  t.strictSame(escaped, [], 'nothing escaped as an uncaught exception');
  t.notOk(existsSync(spool), 'the server did not recreate the removed spool');
  manager.release();
});

t.test('the spool replaced while serving: the server stops, and the old spool keeps every request for the next server', async (t) => {
  const { root, spool } = spoolIn(t);
  const escaped = watchEscapes(t);
  const manager = new GatedManager(1, (r) => r);
  const { done } = startServer(t, manager, { spool, rescanIntervalMs: 20 });
  const client = testClient(t, spool);
  const ids = [await client.enqueue('first'), await client.enqueue('second')];
  await waitFor(() => manager.waiting === 1 && spoolContents(spool).pending.length === 1, 'one running, one pending');
  const old = join(root, 'spool.old');
  renameSync(spool, old);
  openSpool(spool); // a fresh, empty spool in its place
  t.match(await ending(done), { name: 'SpoolError', message: /removed or replaced/ });
  t.strictSame(escaped, []);
  t.strictSame(readdirSync(join(old, 'running')), [ids[0]], 'the running request stays in running/ of the old spool, to run again');
  t.strictSame(readdirSync(join(old, 'pending')), [ids[1]]);
  t.strictSame(spoolContents(spool).complete, [], 'nothing was written into the new spool');
  // Its lock names this (live) process; a restarted server would have another pid and take it over.
  rmSync(join(old, 'server.lock'));
  manager.release();
  const next = new GatedManager(1, (r) => r, false);
  startServer(t, next, { spool: old, rescanIntervalMs: 20 });
  const oldClient = testClient(t, old);
  t.equal(await oldClient.wait(ids[0]!), 'first', 'nothing lost: the interrupted request runs again');
  t.equal(await oldClient.wait(ids[1]!), 'second');
});

t.test('a state directory removed while serving is recreated with its mode, and serving goes on', async (t) => {
  const { spool } = spoolIn(t);
  const paths = openSpool(spool);
  chmodSync(paths.dirs.complete, 0o1775); // a shared spool's sticky complete/: the mode must come back too
  const logger = new RecordingLogger();
  const manager = new GatedManager(1, (r) => r, false);
  const { done } = startServer(t, manager, { spool, rescanIntervalMs: 20, logger });
  const settled = trackSettled(done);
  const client = testClient(t, spool);
  t.equal(await client.run('before'), 'before');
  for (const dir of ['requested', 'pending', 'running', 'complete', 'aborting', 'tmp', 'logs'] as const) {
    const mode = statSync(paths.dirs[dir]).mode;
    rmdirSync(paths.dirs[dir]);
    await waitFor(() => existsSync(paths.dirs[dir]), `${dir}/ to be recreated`);
    t.equal(statSync(paths.dirs[dir]).mode, mode, `${dir}/ has its mode back`);
    t.equal(await client.run(`after ${dir}`), `after ${dir}`, `serving goes on after ${dir}/ was removed`);
    t.equal(logger.find('a spool directory is missing (removed by hand or by a tmp cleaner?); it is made again if it stays missing', (f) => f.dir === dir).length, 1, `reported once for ${dir}/`);
    t.equal(logger.find('recreated a missing spool directory', (f) => f.dir === dir).length, 1, `recreated once: ${dir}/`);
  }
  t.notOk(settled(), 'the server never stopped');
});

t.test('a request file the server may not read gets a rejected result (its directory is fine)', async (t) => {
  const { spool } = spoolIn(t);
  openSpool(spool);
  const faults = new FaultSwitch();
  const { WorkQueueServer: FaultyServer } = await loadFaultyServer(t, faults);
  const logger = new RecordingLogger();
  const manager = new GatedManager(1, (r) => r, false);
  startServerFrom(t, FaultyServer, manager, { spool, rescanIntervalMs: 20, logger });
  const client = testClient(t, spool);
  const id = plantedId(7);
  // As `chmod 000` on the file would do for a server that is not root: open fails with EACCES.
  faults.fault = { code: 'EACCES', dir: join(spool, 'requested', id) };
  plantFile(spool, 'requested', id, encodeRequest({ body: 'secret', submittedAt: 1, client: { pid: 1, host: 'h' } }));
  const result = await client.waitForResult(id, { timeoutMs: 10_000 });
  t.match(result, { id, ok: false, status: 'rejected', error: { name: 'ProtocolError', message: /permission/ } });
  t.ok(faults.injected > 0, 'the fault was hit');
  t.equal(logger.find('rejected unreadable request', (f) => f.id === id).length, 1, 'logged once');
  t.strictSame(manager.calls, []);
  faults.fault = undefined;
  t.equal(await client.run('readable'), 'readable');
});

t.test('a request file the server may not read, for real (chmod 000)', { skip: isRoot && 'root reads any file: see the injected test above' }, async (t) => {
  const { spool } = spoolIn(t);
  const manager = new GatedManager(1, (r) => r, false);
  startServer(t, manager, { spool, rescanIntervalMs: 20 });
  const client = testClient(t, spool);
  const id = plantedId(8);
  const temp = join(spool, 'tmp', 'unreadable');
  writeFileSync(temp, encodeRequest({ body: 'secret', submittedAt: 1, client: { pid: 1, host: 'h' } }));
  chmodSync(temp, 0);
  renameSync(temp, join(spool, 'requested', id));
  t.match(await client.waitForResult(id, { timeoutMs: 10_000 }), { ok: false, status: 'rejected' });
  t.strictSame(manager.calls, []);
});
