/**
 * The one door to the file system for spool work: every spool module reaches
 * node:fs through these calls (test/fixtures/faulty-fs.ts injects faults under
 * them). The calls live in fs/, by concern: entries.ts (look, remove),
 * read.ts, write.ts (write, publish, move, sync), lock-file.ts.
 * Files are published by link(2), which fails with EEXIST rather than replace
 * a name; entries are checked with lstat and opened with O_NOFOLLOW|O_NONBLOCK,
 * so a symlink, FIFO, socket or device planted in the spool is refused instead
 * of followed, blocked on or opened; entries of any type are removed without
 * being followed or descended into.
 * Every helper names the race it tolerates; anything else is thrown.
 */
export * from './fs/entries.js';
export * from './fs/lock-file.js';
export * from './fs/read.js';
export * from './fs/write.js';
