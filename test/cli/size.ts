/** `--max-output` sizes: plain strings in, bytes out. */
import t from 'tap';
import { parseSize } from '../../src/cli/size.js';
import { formatBytes } from '../../src/task-manager/output-budget.js';

t.test('sizes with K, M, G, T suffixes (powers of 1024), with or without B/iB; plain bytes', async (t) => {
  t.equal(parseSize('1048576'), 1024 * 1024);
  t.equal(parseSize('10M'), 10 * 1024 * 1024);
  t.equal(parseSize('1G'), 1024 ** 3);
  t.equal(parseSize('512k'), 512 * 1024);
  t.equal(parseSize('1.5MiB'), 1.5 * 1024 * 1024);
  t.equal(parseSize(' 2 GB '), 2 * 1024 ** 3);
});

t.test('anything else is refused with one message', async (t) => {
  for (const bad of ['', '0', '-1M', 'M', '10X', '1e6', 'ten']) t.throws(() => parseSize(bad), /expected a size \(bytes, or with K, M, G: powers of 1024, as in 10M\) >= 1, got/, JSON.stringify(bad));
});

t.test('byte counts read back as people write them', async (t) => {
  t.equal(formatBytes(64 * 1024 * 1024), '64 MiB');
  t.equal(formatBytes(1024 * 1024), '1 MiB');
  t.equal(formatBytes(1.5 * 1024 ** 3), '1.5 GiB');
  t.equal(formatBytes(1000), '1000 bytes');
});
