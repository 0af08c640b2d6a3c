import t from 'tap';
import { fileKey, flockedFiles } from '../../src/spool/flock.js';

t.test('flockedFiles reads exclusive FLOCK holders from /proc/locks text, device numbers in hex', async (t) => {
  const text = [
    '1: FLOCK  ADVISORY  WRITE 14021 fe:00:5343316 0 EOF',
    '2: POSIX  ADVISORY  WRITE 900 fe:00:77 0 EOF',
    '3: FLOCK  ADVISORY  WRITE -1 00:2b:12 0 EOF',
    '5: FLOCK  ADVISORY  READ 902 fe:00:13 0 EOF',
    '3: -> FLOCK  ADVISORY  WRITE 901 fe:00:99 0 EOF',
    '4: OFDLCK ADVISORY  READ -1 08:11:5 0 EOF',
    '',
  ].join('\n');
  t.strictSame([...flockedFiles(text)].sort(), ['0:43:12', '254:0:5343316']);
  t.strictSame([...flockedFiles('')], [], 'no locks at all');
});

t.test('fileKey decodes a stat dev_t the way /proc/locks prints it', async (t) => {
  t.equal(fileKey(0xfe00, 42), '254:0:42');
  t.equal(fileKey(0x0803, 7), '8:3:7', 'sda3');
  t.equal(fileKey(259n << 8n | 1n, 9n), '259:1:9', 'nvme (major over 255)');
  // glibc's makedev(0x1002, 0x403): major bits 0-11 at 8, the rest at 32; minor bits 0-7 at 0, the rest at 12.
  t.equal(fileKey((0x002n << 8n) | (0x1000n << 32n) | 0x03n | (0x400n << 12n), 1), `${0x1002}:${0x403}:1`, 'the wide encoding');
});
