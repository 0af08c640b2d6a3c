import t from 'tap';
import { inWrittenOrder, MAX_ORDER_RUNS, OutputOrder } from '../../src/task-manager/output-order.js';

const pieces = (out: string, err: string, order: unknown): string[] => inWrittenOrder(Buffer.from(out), Buffer.from(err), order).map(([s, b]) => `${s}:${Buffer.from(b).toString()}`);

t.test('OutputOrder records alternating runs, stdout first; only when both streams had output', async (t) => {
  const record = (chunks: Array<['stdout' | 'stderr', number]>): number[] | undefined => {
    const order = new OutputOrder();
    for (const [stream, n] of chunks) order.push(stream, n);
    return order.runs();
  };
  t.strictSame(record([['stdout', 2], ['stderr', 2], ['stdout', 2]]), [2, 2, 2]);
  t.strictSame(record([['stderr', 3], ['stdout', 1], ['stdout', 1]]), [0, 3, 2], 'stderr first: a leading 0; a run grows while its stream goes on');
  t.strictSame(record([['stdout', 2], ['stderr', 0], ['stdout', 2]]), undefined, 'an empty chunk is no run');
  t.strictSame(record([['stderr', 2], ['stderr', 2]]), undefined, 'one stream: nothing to order');
  t.strictSame(record([]), undefined);
});

t.test('OutputOrder keeps at most MAX_ORDER_RUNS runs; the rest of each stream follows', async (t) => {
  const order = new OutputOrder();
  for (let i = 0; i < MAX_ORDER_RUNS + 10; i++) order.push(i % 2 === 0 ? 'stdout' : 'stderr', 1);
  order.push('stdout', 5);
  const runs = order.runs()!;
  t.equal(runs.length, MAX_ORDER_RUNS);
  t.ok(runs.every((n) => n === 1), 'nothing after the cut is added to a run');
});

t.test('inWrittenOrder replays the runs, then what they do not cover', async (t) => {
  t.strictSame(pieces('1\n3\n', '2\n', [2, 2, 2]), ['stdout:1\n', 'stderr:2\n', 'stdout:3\n']);
  t.strictSame(pieces('ab', 'xy', [0, 1, 1]), ['stderr:x', 'stdout:a', 'stdout:b', 'stderr:y'], 'a cut order: stdout’s rest, then stderr’s');
  t.strictSame(pieces('ab', 'xy', undefined), ['stdout:ab', 'stderr:xy'], 'no order: one stream after the other');
  t.strictSame(pieces('ab', 'xy', [1, -1, 1]), ['stdout:ab', 'stderr:xy'], 'an order that is not byte counts is ignored');
  t.strictSame(pieces('ab', 'xy', 'garbage'), ['stdout:ab', 'stderr:xy']);
  t.strictSame(pieces('a', 'x', [5, 5, 5]), ['stdout:a', 'stderr:x'], 'runs longer than the bytes there (output cut): what there is');
});
