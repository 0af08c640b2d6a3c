/**
 * Where wq's own stdout and stderr lead: the same terminal or file (a shell's
 * `>out 2>&1`, an interactive terminal), or two places.
 */
import { fstatSync } from 'node:fs';
import { isErrno } from '../errors.js';

/** Whether two of this process's file descriptors lead to the same file or terminal. */
export function sameFile(a: number, b: number): boolean {
  try {
    const x = fstatSync(a);
    const y = fstatSync(b);
    return x.dev === y.dev && x.ino === y.ino;
  } catch (err) {
    if (isErrno(err, 'EBADF')) return false; // a closed descriptor leads nowhere
    throw err;
  }
}
