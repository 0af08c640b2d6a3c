import t from 'tap';
import { parseNumberIn, parseSecondsIn, parseWholeNumberIn, rangeText } from '../../src/cli/option-ranges.js';

t.test('ranges read as the message says them', async (t) => {
  t.equal(rangeText({ what: 'x', min: 0 }), '>= 0');
  t.equal(rangeText({ what: 'x', min: 0, minExclusive: true }), '> 0');
  t.equal(rangeText({ what: 'x', min: 1, max: 9 }), 'from 1 to 9');
  t.equal(rangeText({ what: 'x', min: 0, minExclusive: true, max: 9 }), '> 0 and <= 9');
  t.equal(rangeText({ what: 'x', min: 1, max: 2 ** 30, maxText: '1G' }), 'from 1 to 1G');
});

t.test('seconds become milliseconds, within the range, in the one message', async (t) => {
  const parse = parseSecondsIn({ min: 0.1, max: 100 });
  t.equal(parse('0.1'), 100);
  t.equal(parse('2'), 2000);
  t.equal(parse('.5'), 500);
  t.equal(parse('1e1'), 10_000);
  for (const bad of ['0', '0.01', '-1', '100.5', '', ' 1', '0x10', 'soon', 'Infinity', 'NaN']) {
    t.throws(() => parse(bad), { message: `expected a number of seconds from 0.1 to 100, got "${bad}"` }, JSON.stringify(bad));
  }
  // Without a maximum, a value whose milliseconds are not exact integers any more is refused all the same.
  t.throws(() => parseSecondsIn({ min: 0 })('1e306'), { message: 'expected a number of seconds >= 0, got "1e306"' });
  t.throws(() => parseSecondsIn({ min: 1 })('0.9999'), { message: 'expected a number of seconds >= 1, got "0.9999"' }, 'rounds to 1000 ms but is below 1 s');
});

t.test('whole numbers and plain numbers', async (t) => {
  const port = parseWholeNumberIn({ what: 'a port number', min: 0, max: 65535 });
  t.equal(port('0'), 0);
  t.equal(port('65535'), 65535);
  for (const bad of ['65536', '-1', '1.5', '', 'http']) t.throws(() => port(bad), { message: `expected a port number from 0 to 65535, got "${bad}"` });
  t.throws(() => parseWholeNumberIn({ min: 1 })('0'), { message: 'expected a whole number >= 1, got "0"' });
  t.throws(() => parseWholeNumberIn({ min: 1 })('99999999999999999999'), { message: 'expected a whole number >= 1, got "99999999999999999999"' });
  const load = parseNumberIn({ what: 'a load average', min: 0, minExclusive: true });
  t.equal(load('1.5'), 1.5);
  for (const bad of ['0', '-2', 'x']) t.throws(() => load(bad), { message: `expected a load average > 0, got "${bad}"` });
});
