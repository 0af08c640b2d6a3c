import t from 'tap';
import { formatRequestId, isRequestId, MAX_ID_AHEAD_MICROS, nextIdMicros, RequestIdGenerator, requestIdTimeMs, type IdSource } from '../../src/spool/request-id.js';

t.test('ids are fixed width, valid, and sort in the order they were made', async (t) => {
  const gen = new RequestIdGenerator();
  const ids = Array.from({ length: 5000 }, () => gen.next());
  t.ok(ids.every(isRequestId), 'every id matches the pattern');
  t.equal(new Set(ids.map((id) => id.length)).size, 1, 'one width');
  t.strictSame([...ids].sort(), ids, 'lexical order is creation order');
  t.equal(new Set(ids).size, ids.length, 'no duplicates');
});

t.test('a clock that stands still or steps back (by less than MAX_ID_AHEAD_MICROS) never yields a repeated or smaller id', async (t) => {
  const times = [1_000_000_000_000_000, 1_000_000_000_000_000, 999_999_999_000_000, 1_000_000_000_000_005];
  let i = 0;
  const source: IdSource = { nowMicros: () => times[Math.min(i++, times.length - 1)]!, suffix: () => '000000000000' };
  const gen = new RequestIdGenerator(source);
  const ids = times.map(() => gen.next());
  t.strictSame([...ids].sort(), ids);
  t.equal(new Set(ids).size, ids.length);
});

const YEAR_MICROS = 365 * 24 * 3600e6;

/** A generator whose clock reads `readings` in turn, with a fixed suffix (so a repeated time would repeat the id). */
function scripted(readings: number[]): { gen: RequestIdGenerator; stamps: () => number[]; ids: string[] } {
  let i = 0;
  const gen = new RequestIdGenerator({ nowMicros: () => readings[i++]!, suffix: () => '000000000000' });
  const ids = readings.map(() => gen.next());
  return { gen, ids, stamps: () => ids.map((id) => Number(id.slice(0, 16))) };
}

t.test('one clock reading a year ahead: the ids after it come back to within MAX_ID_AHEAD_MICROS of the clock, and none repeats', async (t) => {
  const base = 1_800_000_000_000_000;
  // Forward, one reading a year ahead, then the true time again, standing still for a while and moving on.
  const readings = [base, base + 10, base + YEAR_MICROS, base + 20, base + 20, base + 20, base + 30, base + 1_000_000, base + 60e6];
  const { ids, stamps } = scripted(readings);
  t.equal(stamps()[2], base + YEAR_MICROS, 'the id made by the reading a year ahead is a year ahead: its clock said so');
  for (const [i, stamp] of stamps().entries()) {
    if (i === 2) continue;
    t.ok(stamp - readings[i]! <= MAX_ID_AHEAD_MICROS, `id ${i} is at most ${MAX_ID_AHEAD_MICROS} µs ahead of its clock (${stamp - readings[i]!} µs)`);
  }
  t.ok(stamps()[3]! < base + 2 * MAX_ID_AHEAD_MICROS, 'the very next id is back with the clock');
  t.equal(new Set(ids).size, ids.length, 'no id repeats');
  const after = ids.slice(3);
  t.strictSame([...after].sort(), after, 'the ids after the bad reading keep their order among themselves');
});

t.test('the next id (pure): the clock, or one more than the last within MAX_ID_AHEAD_MICROS of the clock, else the clock', async (t) => {
  const last = 1_800_000_000_000_000;
  t.equal(nextIdMicros(last, last + 5), last + 5, 'the clock moved on');
  t.equal(nextIdMicros(last, last), last + 1, 'the same microsecond');
  t.equal(nextIdMicros(last, last - 1_000_000), last + 1, 'a step back of 1 s: keep counting, in order');
  t.equal(nextIdMicros(last, last + 1 - MAX_ID_AHEAD_MICROS), last + 1, 'at the bound: still in order');
  t.equal(nextIdMicros(last, last - MAX_ID_AHEAD_MICROS), last - MAX_ID_AHEAD_MICROS, 'past the bound: the clock');
  t.equal(nextIdMicros(last + YEAR_MICROS, last), last, 'the last id a year ahead: the clock');
  t.equal(nextIdMicros(0, last), last, 'the first id');
});

t.test('names that are not ids are rejected', async (t) => {
  for (const name of ['', '.hidden', '..', 'a b', '1795366421947895-8d42b22ad81', '1795366421947895-8D42B22AD816', '1795366421947895_8d42b22ad816', `${'1'.repeat(16)}-${'a'.repeat(12)}x`, '１795366421947895-8d42b22ad816']) {
    t.notOk(isRequestId(name), JSON.stringify(name));
  }
  t.ok(isRequestId('1795366421947895-8d42b22ad816'));
  t.throws(() => formatRequestId(-1, '000000000000'));
  t.equal(requestIdTimeMs('1795366421947895-8d42b22ad816'), 1795366421947.895);
});
