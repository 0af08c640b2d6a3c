/** A worker's output, cut into lines for the server's log. */
import t from 'tap';
import { OutputLines } from '../../src/task-manager/output-lines.js';

t.test('lines across chunks, a last line without a newline at flush, and characters split between chunks', async (t) => {
  const lines: string[] = [];
  const out = new OutputLines((line) => lines.push(line));
  out.push(Buffer.from('one\ntw'));
  out.push(Buffer.from('o\n\nthr'));
  const euro = Buffer.from('€');
  out.push(Buffer.concat([Buffer.from('ee '), euro.subarray(0, 1)]));
  out.push(euro.subarray(1));
  t.same(lines, ['one', 'two', '']);
  out.flush();
  t.same(lines, ['one', 'two', '', 'three €']);
  out.flush();
  t.equal(lines.length, 4, 'nothing more to flush');
});

t.test('a line longer than the limit is passed on in pieces: nothing is buffered without bound', async (t) => {
  const lines: string[] = [];
  const out = new OutputLines((line) => lines.push(line), 4);
  out.push(Buffer.from('abcdefghij'));
  t.same(lines, ['abcd', 'efgh']);
  out.push(Buffer.from('\n'));
  t.same(lines, ['abcd', 'efgh', 'ij']);
});
