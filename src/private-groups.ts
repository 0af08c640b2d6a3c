/**
 * Which groups have no member but the server's user (and root), from the text
 * of /etc/passwd and /etc/group (plain data in, gids out; spool/access.ts
 * reads the files). On systems that give each user a group of their own and
 * umask 002 (Debian, Ubuntu, Fedora), home directories such as ~/.local are
 * group-writable by that group alone: its write bit lets no one else in.
 */

/** One line of /etc/passwd, as far as groups care. */
export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
}

/** One line of /etc/group. */
export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

const ID = /^\d+$/;

/** Parses /etc/passwd (`name:x:uid:gid:…`); lines that are not entries (comments, NIS `+` lines) are skipped. */
export function parsePasswd(text: string): PasswdEntry[] {
  return text.split('\n').flatMap((line) => {
    const [name, , uid, gid] = line.split(':');
    if (name === undefined || name === '' || !ID.test(uid ?? '') || !ID.test(gid ?? '')) return [];
    return [{ name, uid: Number(uid), gid: Number(gid) }];
  });
}

/** Parses /etc/group (`name:x:gid:member,member`). */
export function parseGroup(text: string): GroupEntry[] {
  return text.split('\n').flatMap((line) => {
    const [name, , gid, members] = line.split(':');
    if (name === undefined || name === '' || !ID.test(gid ?? '')) return [];
    return [{ name, gid: Number(gid), members: (members ?? '').split(',').map((m) => m.trim()).filter((m) => m !== '') }];
  });
}

/**
 * The groups whose write bit lets no one but `uid` and root in: `uid`'s
 * primary group, when no other user has it as primary group and its
 * /etc/group line lists no other member (a name /etc/passwd does not know
 * counts as another member). Empty when `uid` is not in /etc/passwd, or a
 * file's text is unknown (undefined: it could not be read).
 */
export function privateGroups(uid: number, passwdText: string | undefined, groupText: string | undefined): number[] {
  if (passwdText === undefined || groupText === undefined) return [];
  const users = parsePasswd(passwdText);
  const self = users.find((u) => u.uid === uid);
  if (self === undefined) return [];
  const trusted = (u: PasswdEntry): boolean => u.uid === uid || u.uid === 0;
  if (users.some((u) => u.gid === self.gid && !trusted(u))) return [];
  const lines = parseGroup(groupText).filter((g) => g.gid === self.gid);
  const members = lines.flatMap((g) => g.members);
  if (members.some((name) => { const u = users.find((e) => e.name === name); return u === undefined || !trusted(u); })) return [];
  return [self.gid];
}
