import t from 'tap';
import { formatRequestId, isRequestId, RequestIdGenerator, requestIdTimeMs, type IdSource } from '../../src/spool/request-id.js';

t.test('ids are fixed width, valid, and sort in the order they were made', async (t) => {
  const gen = new RequestIdGenerator();
  const ids = Array.from({ length: 5000 }, () => gen.next());
  t.ok(ids.every(isRequestId), 'every id matches the pattern');
  t.equal(new Set(ids.map((id) => id.length)).size, 1, 'one width');
  t.strictSame([...ids].sort(), ids, 'lexical order is creation order');
  t.equal(new Set(ids).size, ids.length, 'no duplicates');
});

t.test('a clock that stands still or steps back never yields a repeated or smaller id', async (t) => {
  const times = [1_000_000_000_000_000, 1_000_000_000_000_000, 999_999_999_000_000, 1_000_000_000_000_005];
  let i = 0;
  const source: IdSource = { nowMicros: () => times[Math.min(i++, times.length - 1)]!, suffix: () => '000000000000' };
  const gen = new RequestIdGenerator(source);
  const ids = times.map(() => gen.next());
  t.strictSame([...ids].sort(), ids);
  t.equal(new Set(ids).size, ids.length);
});

t.test('names that are not ids are rejected', async (t) => {
  for (const name of ['', '.hidden', '..', 'a b', '1795366421947895-8d42b22ad81', '1795366421947895-8D42B22AD816', '1795366421947895_8d42b22ad816', `${'1'.repeat(16)}-${'a'.repeat(12)}x`, '１795366421947895-8d42b22ad816']) {
    t.notOk(isRequestId(name), JSON.stringify(name));
  }
  t.ok(isRequestId('1795366421947895-8d42b22ad816'));
  t.throws(() => formatRequestId(-1, '000000000000'));
  t.equal(requestIdTimeMs('1795366421947895-8d42b22ad816'), 1795366421947.895);
});
