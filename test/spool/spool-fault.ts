/** Messages for a spool that cannot be used: plain data in, one sentence out. */
import t from 'tap';
import { asSpoolError, describeSpoolFault, isSpoolFault } from '../../src/spool/spool-fault.js';
import { SpoolError, WorkQueueError } from '../../src/errors.js';

const ROOT = '/srv/wq';

t.test('the spool, the cause and the part of the spool; never an internal temp name', async (t) => {
  t.equal(
    describeSpoolFault(ROOT, { code: 'EACCES', syscall: 'open', path: '/srv/wq/tmp/request.12718.1' }, 1001),
    'spool /srv/wq cannot be used: permission denied for uid 1001 (creating a file in its tmp/ directory)',
  );
  t.equal(
    describeSpoolFault(ROOT, { code: 'EROFS', syscall: 'open', path: '/srv/wq/format.4239682112' }, 1001),
    'spool /srv/wq cannot be used: its file system is read-only (writing its format file)',
  );
  t.equal(describeSpoolFault(ROOT, { code: 'EACCES', syscall: 'open', path: '/srv/wq/server.lock' }), 'spool /srv/wq cannot be used: permission denied (opening its server.lock)');
  t.equal(describeSpoolFault(ROOT, { code: 'EACCES', syscall: 'lstat', path: '/srv/wq/format' }, 7), 'spool /srv/wq cannot be used: permission denied for uid 7 (looking at its format file)');
  t.equal(describeSpoolFault(ROOT, { code: 'EACCES', syscall: 'scandir', path: '/srv/wq/complete' }, 7), 'spool /srv/wq cannot be used: permission denied for uid 7 (listing its complete/ directory)');
  t.equal(
    describeSpoolFault(ROOT, { code: 'EACCES', syscall: 'unlink', path: '/srv/wq/complete/1763830000000000-0123456789ab' }, 7),
    'spool /srv/wq cannot be used: permission denied for uid 7 (removing its complete/1763830000000000-0123456789ab)',
  );
  t.equal(describeSpoolFault(ROOT, { code: 'ENOTDIR', syscall: 'mkdir', path: '/srv/wq' }), 'spool /srv/wq cannot be used: a part of its path is not a directory (creating the spool directory)');
  t.equal(describeSpoolFault(`${ROOT}/`, { code: 'ENOSPC', syscall: 'write', path: '/srv/wq/tmp/x' }), 'spool /srv/wq/ cannot be used: its file system is full (writing a file in its tmp/ directory)');
  t.equal(describeSpoolFault(ROOT, { code: 'EACCES', syscall: 'mkdir', path: '/srv' }, 7), 'spool /srv/wq cannot be used: permission denied for uid 7 (creating /srv)');
  t.equal(describeSpoolFault(ROOT, { code: 'EROFS' }), 'spool /srv/wq cannot be used: its file system is read-only');
});

t.test('errors that are not the spool\'s fault get no such message, and pass through unchanged', async (t) => {
  t.equal(describeSpoolFault(ROOT, { code: 'EMFILE', syscall: 'open', path: '/srv/wq/tmp/x' }), undefined);
  t.equal(describeSpoolFault(ROOT, {}), undefined);
  const emfile = Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE', syscall: 'open' });
  t.equal(isSpoolFault(emfile), false);
  t.equal(asSpoolError(ROOT, emfile), emfile);
  const ours = new WorkQueueError('already ours', 'ERR_X');
  t.equal(asSpoolError(ROOT, ours), ours, 'a WorkQueueError is kept as it is');
  const eacces = Object.assign(new Error("EACCES: permission denied, open '/srv/wq/tmp/request.1.1'"), { code: 'EACCES', syscall: 'open', path: '/srv/wq/tmp/request.1.1' });
  const converted = asSpoolError(ROOT, eacces);
  t.type(converted, SpoolError);
  t.equal((converted as SpoolError).code, 'ERR_SPOOL');
  t.equal((converted as SpoolError).cause, eacces, 'the system error is its cause');
  t.notMatch((converted as SpoolError).message, /request\.1\.1/);
});
