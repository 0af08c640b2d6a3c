/** The live line's words for a request's progress, as plain data (the queue gives the progress). */
import t from 'tap';
import { describe, fitTo } from '../../src/cli/progress.js';

const ID = '1795366421947895-8d42b22ad816';

t.test('queued: its place in line, and what holds the line when something does', async (t) => {
  t.equal(describe({ state: 'pending', position: 2, waiting: 5 }, ID), `wq: ${ID} queued #2 of 5`);
  t.equal(describe({ state: 'requested', position: 1, waiting: 1, heldBy: { reason: 'capacity', maxTasks: 2 } }, ID), `wq: ${ID} queued #1 of 1: capacity full (2 of 2 running)`);
  t.equal(describe({ state: 'requested', position: 3, waiting: 3, heldBy: { reason: 'no-server' } }, ID), `wq: ${ID} queued #3 of 3: no server is running`);
});

t.test('running: for how long; interrupted when its server is gone', async (t) => {
  t.equal(describe({ state: 'running', sinceMs: 1_000 }, ID, 76_000), `wq: ${ID} running for 1m15s`);
  t.equal(describe({ state: 'running', sinceMs: undefined }, ID, 76_000), `wq: ${ID} running for 0s`, 'its start unknown: just started');
  t.match(describe({ state: 'running', interrupted: true }, ID), new RegExp(`^wq: ${ID} interrupted: no server is running; it runs again when`));
});

t.test('a result, or in no state: finishing', async (t) => {
  t.equal(describe({ state: 'complete' }, ID), `wq: ${ID} finishing`);
  t.equal(describe({ state: undefined }, ID), `wq: ${ID} finishing`);
});

t.test('fitTo cuts to one row, leaving the last column free', async (t) => {
  t.equal(fitTo('abcdef', 10), 'abcdef');
  t.equal(fitTo('abcdefghij', 6), 'abcd…');
  t.equal(fitTo('abc', undefined), 'abc');
});
