/** Places in line, as plain data: one computation for `wq status` and the live line of a wait. */
import t from 'tap';
import { placeInLine, waitingLine } from '../../src/queue/line.js';

const A = '1795366421947895-000000000001';
const B = '1795366421947896-000000000002';
const C = '1795366421947897-000000000003';

t.test('waitingLine orders requested and pending together by id, the FIFO order', async (t) => {
  t.same(waitingLine([C, A], [B]), [
    { id: A, state: 'requested', position: 1 },
    { id: B, state: 'pending', position: 2 },
    { id: C, state: 'requested', position: 3 },
  ]);
  t.same(waitingLine([], []), []);
});

t.test('an id seen in both listings (it moved between them) is in the line as each saw it', async (t) => {
  t.same(waitingLine([A], [A, B]).map((e) => [e.id, e.position]), [[A, 1], [A, 2], [B, 3]]);
});

t.test('placeInLine: 1 + the waiting ids before it, whether or not it is listed itself', async (t) => {
  const line = waitingLine([A, C], [B]);
  t.equal(placeInLine(line, A), 1);
  t.equal(placeInLine(line, C), 3);
  const b = line.find((e) => e.id === B)!;
  t.equal(placeInLine(line, B), b.position, 'the same place as the line gives it');
  t.equal(placeInLine(waitingLine([A, C], []), B), 2, 'not listed (it moved on meanwhile): where it would stand');
  t.equal(placeInLine(waitingLine([A], [A]), A), 1, 'seen twice: its first place');
});
