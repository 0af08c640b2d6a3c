/**
 * Words for what holds a request, shared by `wq status` and the live line of a
 * wait: why a queued request does not start, and what becomes of one its
 * server was running when it stopped.
 */
import type { RequestHold, RequestStatus } from '../queue/types.js';

/** Why waiting requests do not start, as a phrase: "capacity full (2 of 2 running)". */
export function describeHold(hold: RequestHold): string {
  switch (hold.reason) {
    case 'no-server':
      return 'no server is running';
    case 'capacity':
      return `capacity full (${hold.maxTasks} of ${hold.maxTasks} running)`;
    case 'load':
      return `load average ${hold.load} is not below --max-load ${hold.maxLoad}`;
    case 'orphans':
      return "a stopped server's tasks are being killed first";
    case 'stopping':
      return 'the server is stopping';
    case 'results':
      return 'the server cannot write results (is the disk full?)';
    case 'fault':
      return 'the server cannot start tasks now (see its log)';
  }
}

/** A request left in running/ by a server that is gone: what becomes of it, and what is left of its task. */
export function describeInterrupted(r: Pick<RequestStatus, 'survivingPids'>): string {
  const left = r.survivingPids === undefined || r.survivingPids.length === 0 ? '' : `; its task still runs (pid ${r.survivingPids.join(', ')}) and is killed first`;
  return `interrupted: no server is running; it runs again when \`wq serve\` starts (or fails, with --fail-interrupted)${left}`;
}
