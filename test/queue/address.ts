import t from 'tap';
import { formatRedisAddress, isRedisAddress, parseRedisAddress, redact } from '../../src/queue/address.js';

t.test('a redis:// address: host, port (6379 by default), name, db, credentials, TLS', async (t) => {
  t.same(parseRedisAddress('redis://10.0.0.5/flash'), { host: '10.0.0.5', port: 6379, db: 0, tls: false, name: 'flash' });
  t.same(parseRedisAddress('redis://127.0.0.1:6390/lab-1.images?db=2'), { host: '127.0.0.1', port: 6390, db: 2, tls: false, name: 'lab-1.images' });
  t.same(parseRedisAddress('rediss://wq:s%40cret@redis.lab:6380/q'), { host: 'redis.lab', port: 6380, db: 0, tls: true, name: 'q', username: 'wq', password: 's@cret' });
  t.same(parseRedisAddress('redis://:pw@[::1]:7000/q'), { host: '::1', port: 7000, db: 0, tls: false, name: 'q', password: 'pw' });
  t.ok(isRedisAddress('REDIS://h/q'), 'the scheme in any case');
  t.notOk(isRedisAddress('/var/spool/wq'), 'a directory is not one');
});

t.test('a wrong address is refused with what is wrong and what is expected', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['redis://host', /no queue name/],
    ['redis://host/', /no queue name/],
    ['redis://host/a:b', /queue name "a:b" must be/],
    ['redis://host/a/b', /queue name "a\/b" must be/],
    ['redis://host/q?timeout=1', /unknown parameter "timeout"/],
    ['redis://host/q?db=x', /db must be a database number/],
    ['redis://host/q#x', /"#"/],
    ['http://host/q', /not a redis:\/\/ URL/],
    ['redis://host:99999/q', /not a valid URL/],
  ];
  for (const [text, why] of cases) {
    t.throws(() => parseRedisAddress(text), { code: 'ERR_INVALID_OPTION', message: why }, text);
    t.throws(() => parseRedisAddress(text), { message: /expected redis:\/\/HOST\[:PORT\]\/NAME/ }, `${text}: says what is expected`);
  }
});

t.test('a password never shows: in messages and in the address as printed', async (t) => {
  t.equal(redact('redis://u:secret@h:1/q'), 'redis://u:***@h:1/q');
  t.equal(redact('redis://h:1/q'), 'redis://h:1/q');
  t.throws(() => parseRedisAddress('redis://u:secret@h:1/'), { message: /u:\*\*\*@h/ });
  t.notMatch(String((() => { try { parseRedisAddress('redis://u:secret@h:1/'); } catch (err) { return err; } })()), /secret/);
  t.equal(formatRedisAddress(parseRedisAddress('redis://u:secret@h/q?db=3')), 'redis://u:***@h:6379/q?db=3');
  t.equal(formatRedisAddress(parseRedisAddress('redis://[::1]:7000/q')), 'redis://[::1]:7000/q');
});
