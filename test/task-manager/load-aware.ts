import t from 'tap';
import { WorkQueueClient } from '../../src/client.js';
import { InProcessTaskManager } from '../../src/task-manager/in-process.js';
import { LoadAwareTaskManager } from '../../src/task-manager/load-aware.js';
import { startServer, waitFor } from '../fixtures/helpers.js';

t.test('nothing starts while the load is at or above maxLoad; work starts once it drops', async (t) => {
  const spool = t.testdir();
  let load = 8;
  let samples = 0;
  const started: string[] = [];
  const inner = new InProcessTaskManager((r: string) => {
    started.push(r);
    return r;
  }, { maxTasks: 4 });
  const manager = new LoadAwareTaskManager(inner, {
    maxLoad: 2,
    sampleIntervalMs: 10,
    load: () => {
      samples++;
      return load;
    },
  });
  startServer(t, manager, { spool, rescanIntervalMs: 20 });
  const client = new WorkQueueClient({ spool });
  t.teardown(() => client.close());
  const ids = [await client.enqueue('a'), await client.enqueue('b')];
  await waitFor(() => client.state(ids[1]!) === 'pending', 'both admitted');
  // The server and the sampler look at the load several more times: still nothing may start.
  const seen = samples;
  await waitFor(() => samples >= seen + 10, 'ten more looks at the load');
  t.strictSame(started, [], 'held back while loaded');
  t.equal(manager.load, 8);
  t.strictSame(manager.holdReason(), { reason: 'load', load: 8, maxLoad: 2 }, 'the load is what holds them');
  load = 0.5;
  t.strictSame(await Promise.all(ids.map((id) => client.wait(id, { timeoutMs: 5000 }))), ['a', 'b']);
  t.strictSame(started, ['a', 'b'], 'started in order once the load dropped');
});

t.test('options are validated; size and maxTasks are the inner manager\'s', async (t) => {
  const inner = new InProcessTaskManager(() => 1, { maxTasks: 3 });
  t.throws(() => new LoadAwareTaskManager(inner, { maxLoad: 0 }), { code: 'ERR_INVALID_OPTION' });
  t.throws(() => new LoadAwareTaskManager(inner, { maxLoad: 2, sampleIntervalMs: -1 }), { code: 'ERR_INVALID_OPTION' });
  t.throws(() => new LoadAwareTaskManager(inner, { maxLoad: 2, sampleIntervalMs: 2 ** 31 }), { code: 'ERR_INVALID_OPTION' }, 'a period setInterval cannot hold');
  const manager = new LoadAwareTaskManager(inner, { maxLoad: 2, load: () => 0 });
  t.equal(manager.maxTasks, 3);
  t.equal(manager.size, 0);
  t.ok(manager.hasCapacity());
  t.equal(manager.holdReason(), undefined, 'nothing holds it back');
  await manager.close();
});
