import t from 'tap';
import { WorkQueueClient } from '../src/client.js';
import { InProcessTaskManager } from '../src/task-manager/in-process.js';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import type { Logger } from '../src/logger.js';
import { encodeResult } from '../src/spool/codec.js';
import { entryPath, openSpool } from '../src/spool/layout.js';
import { spoolContents, startServer, waitFor } from './fixtures/helpers.js';

t.test('durable mode: concurrent round trips all complete and leave nothing behind', async (t) => {
  const spool = t.testdir();
  startServer(t, new InProcessTaskManager((r: number) => r * 2, { maxTasks: 8 }), { spool, durable: true });
  const client = new WorkQueueClient({ spool, durable: true });
  t.teardown(() => client.close());
  const values = Array.from({ length: 200 }, (_, i) => i);
  const results = await Promise.all(values.map((v) => client.run(v)));
  t.strictSame(results, values.map((v) => v * 2));
  await waitFor(() => spoolContents(spool).running.length === 0, 'the last running/ entries to go after their commit');
  const left = spoolContents(spool);
  for (const dir of ['requested', 'pending', 'running', 'complete', 'aborting', 'tmp']) t.strictSame(left[dir], [], `${dir}/ is empty`);
});

t.test('durable mode: a result whose fsync fails (disk full) keeps its running/ entry until a retry commits it', async (t) => {
  let failures = 1;
  const realFs = await import('../src/spool/fs.js');
  const { ResultWriter } = await t.mockImport<typeof import('../src/spool/server/result-writer.js')>('../src/spool/server/result-writer.js', {
    '../src/spool/fs.js': {
      ...realFs,
      syncFileAsync: async (path: string) => {
        if (failures > 0) {
          failures--;
          throw Object.assign(new Error('ENOSPC: no space left on device, fsync'), { code: 'ENOSPC' });
        }
        return realFs.syncFileAsync(path);
      },
    },
  });
  const paths = openSpool(t.testdir());
  const errors: string[] = [];
  const logger: Logger = { debug() {}, info() {}, warn() {}, error: (message) => void errors.push(message) };
  const published: string[] = [];
  const writer = new ResultWriter(paths, true, logger, (id, isPublished) => isPublished && published.push(id));
  const id = '1795366421947895-8d42b22ad816';
  writeFileSync(entryPath(paths, 'running', id), 'request');
  writer.write(id, 'running', encodeResult({ id, ok: true, status: 'normal', value: 'done', finishedAt: Date.now() }));
  await waitFor(() => errors.length > 0, 'the failed commit to be logged');
  t.match(errors[0], /durable commit of results failed/);
  t.ok(existsSync(entryPath(paths, 'running', id)), 'the request is still in running/ while its result is not on disk');
  t.notOk(existsSync(entryPath(paths, 'complete', id)), 'and no result is published');
  await writer.idle();
  t.strictSame(published, [id], 'the retry commits it');
  t.ok(existsSync(entryPath(paths, 'complete', id)));
  t.notOk(existsSync(entryPath(paths, 'running', id)), 'the running entry goes only after the result is committed');
  t.strictSame(readdirSync(paths.dirs.tmp), [], 'no temp file left behind');
});
