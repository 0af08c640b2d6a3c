import { linkSync, mkdirSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { judgeLinks, LINK_SETTLE_MS, LinkedRequests } from '../../../src/spool/server/linked-requests.js';

t.test('judgeLinks: one name is trusted; a twin in tmp/ is a publish, waited for; any other second name is rejected', async (t) => {
  const seen = { nlink: 2, tempTwin: false, nlinkAfter: 2, waitedMs: 0 };
  t.equal(judgeLinks({ ...seen, nlink: 1 }), 'trust');
  t.equal(judgeLinks(seen), 'reject', 'linked from elsewhere in the spool');
  t.equal(judgeLinks({ ...seen, tempTwin: true }), 'wait', 'a publish in progress');
  t.equal(judgeLinks({ ...seen, tempTwin: true, waitedMs: LINK_SETTLE_MS - 1 }), 'wait');
  t.equal(judgeLinks({ ...seen, tempTwin: true, waitedMs: LINK_SETTLE_MS }), 'reject', 'a temp name that stays past the bound');
  t.equal(judgeLinks({ ...seen, nlinkAfter: 1 }), 'trust', 'the temp name went while tmp/ was searched');
});

t.test('LinkedRequests: finds the temp twin in tmp/, times the wait from the first sighting', async (t) => {
  const dir = t.testdir();
  const tmp = join(dir, 'tmp');
  mkdirSync(tmp);
  const request = join(dir, 'req');
  const temp = join(tmp, 'request.1.1');
  writeFileSync(temp, 'x');
  linkSync(temp, request);
  const file = () => statSync(request);
  const linked = new LinkedRequests(tmp, 100);
  t.equal(linked.judge('a', request, file(), 1000), 'wait', 'publish in progress');
  t.equal(linked.judge('a', request, file(), 1099), 'wait');
  t.equal(linked.judge('a', request, file(), 1100), 'reject', 'past the bound since the first sighting');
  unlinkSync(temp);
  t.equal(linked.judge('b', request, file(), 1200), 'trust', 'the temp name went');
  const other = join(dir, 'other');
  linkSync(request, other);
  t.equal(linked.judge('b', request, file(), 1300), 'reject', 'a second name outside tmp/: at once');
});
