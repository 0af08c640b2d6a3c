import t from 'tap';
import { parseGroup, parsePasswd, privateGroups } from '../src/private-groups.js';

const PASSWD = ['root:x:0:0:root:/root:/bin/bash', 'alice:x:1000:1000::/home/alice:/bin/bash', 'bob:x:1001:1001::/home/bob:/bin/bash', 'carol:x:1002:100::/home/carol:/bin/sh', 'dave:x:1003:100::/home/dave:/bin/sh', '# a comment', '+@nis'].join('\n');
const GROUP = ['root:x:0:', 'users:x:100:', 'alice:x:1000:', 'bob:x:1001:alice', 'wheel:x:10:root,alice'].join('\n');

t.test('parsePasswd / parseGroup: entries, without comments or NIS lines', async (t) => {
  t.strictSame(parsePasswd(PASSWD).map((u) => u.name), ['root', 'alice', 'bob', 'carol', 'dave']);
  t.strictSame(parseGroup(GROUP).find((g) => g.name === 'wheel'), { name: 'wheel', gid: 10, members: ['root', 'alice'] });
});

t.test('privateGroups: the user\'s primary group, when no one else but root is in it', async (t) => {
  t.strictSame(privateGroups(1000, PASSWD, GROUP), [1000], "alice's own group (umask 002 systems)");
  t.strictSame(privateGroups(1001, PASSWD, GROUP), [], "bob's group lists alice as a member");
  t.strictSame(privateGroups(1002, PASSWD, GROUP), [], "carol's primary group is dave's too");
  t.strictSame(privateGroups(0, PASSWD, GROUP), [0], "root's group, no one else in it");
  t.strictSame(privateGroups(1000, PASSWD, GROUP.replace('alice:x:1000:', 'alice:x:1000:mallory')), [], 'a member /etc/passwd does not know counts as someone else');
  t.strictSame(privateGroups(4000, PASSWD, GROUP), [], 'a uid not in /etc/passwd has no private group');
  t.strictSame(privateGroups(1000, undefined, GROUP), [], '/etc/passwd unreadable: conservative');
  t.strictSame(privateGroups(1000, PASSWD, undefined), [], '/etc/group unreadable: conservative');
});
