/** `wq status [ID] [--json]`: the queue at a glance, or one request's state. */
import { openQueue } from '../backends.js';
import { resolveClientOptions } from '../client.js';
import { isRequestId } from '../queue/request-id.js';
import type { QueueStatus, RequestStatus } from '../queue/types.js';
import { CliError, EXIT, resolveQueue } from './common.js';
import { formatSeconds } from './progress.js';
import { describeHold, describeInterrupted } from './hold-text.js';

export interface StatusFlags {
  spool?: string;
  queue?: string;
  json?: boolean;
  all?: boolean;
}

/** Waiting requests and results listed by default in the text view (all of them with --all). */
const TEXT_LIMIT = 20;

export async function status(id: string | undefined, flags: StatusFlags): Promise<void> {
  if (id !== undefined && !isRequestId(id)) throw new CliError(`"${id}" is not a request id (they look like 1763830000000000-0123456789ab)`, EXIT.usage);
  const queue = openQueue(resolveClientOptions(resolveQueue(flags)));
  let snapshot: QueueStatus;
  try {
    snapshot = await queue.status();
  } finally {
    queue.close();
  }
  if (id !== undefined) {
    const request = snapshot.requests.find((r) => r.id === id);
    if (request === undefined) {
      if (flags.json) process.stdout.write(`${JSON.stringify({ id, state: 'unknown' })}\n`);
      throw new CliError(`unknown request id ${id}: it is in no state of the spool`, EXIT.unknownId);
    }
    process.stdout.write(flags.json ? `${JSON.stringify(request)}\n` : `${describeRequest(request, snapshot, true)}\n`);
    return;
  }
  process.stdout.write(flags.json ? `${JSON.stringify(snapshot, null, 2)}\n` : renderText(snapshot, flags.all === true));
}

/** One request's line; `why`: say what holds a waiting one (the list view says it once, in the section's title). */
function describeRequest(r: RequestStatus, s: QueueStatus, why = false): string {
  const waiting = s.counts.requested + s.counts.pending;
  const aborting = r.aborting ? ' (aborting)' : '';
  switch (r.state) {
    case 'requested':
    case 'pending':
      return `${r.id} queued #${r.position} of ${waiting}${aborting}${why && r.heldBy !== undefined ? `: ${describeHold(r.heldBy)}` : ''}`;
    case 'running':
      if (r.interrupted) return `${r.id}${aborting} ${describeInterrupted(r)}`;
      return `${r.id} running for ${formatSeconds(r.runningSeconds ?? 0)}${r.pid === undefined ? '' : ` (pid ${r.pid})`}${aborting}`;
    case 'complete':
      return `${r.id} complete; result waiting to be claimed for ${formatSeconds(r.waitingSeconds ?? 0)}`;
  }
}

/** "1 result", "2 results". */
function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

export function renderText(s: QueueStatus, all: boolean): string {
  const lines: string[] = [`${s.servers === undefined ? 'spool' : 'queue'}:   ${s.spool}`];
  if (s.servers !== undefined) {
    if (s.servers.length === 0) lines.push('servers: none running (requests wait until `wq serve --queue …` starts on a host)');
    for (const server of s.servers) {
      const max = server.maxTasks === null ? '' : ` of ${server.maxTasks}`;
      lines.push(`server:  pid ${server.pid} on ${server.host}, up ${formatSeconds(server.uptimeSeconds)}, running ${server.running}${max}`);
    }
  } else if (s.server === null) lines.push('server:  none running (requests wait until `wq serve` starts)');
  else if (!s.server.alive) lines.push(`server:  none running (lock left by pid ${s.server.pid}, which no longer holds it; the next \`wq serve\` takes over)`);
  else {
    const max = s.server.maxTasks === null ? '' : `, max tasks ${s.server.maxTasks}`;
    lines.push(`server:  pid ${s.server.pid} on ${s.server.host}, up ${formatSeconds(s.server.uptimeSeconds)}${max}`);
  }
  const c = s.counts;
  lines.push(`queue:   ${c.requested + c.pending} waiting, ${c.running} running, ${count(c.complete, 'result')} to claim${c.aborting ? `, ${count(c.aborting, 'abort')} pending` : ''}`);
  const section = (title: string, rows: RequestStatus[]): void => {
    if (rows.length === 0) return;
    const held = title === 'waiting' ? rows[0]!.heldBy : undefined;
    lines.push('', held === undefined ? `${title}:` : `${title}: ${describeHold(held)}`);
    const shown = all ? rows : rows.slice(0, TEXT_LIMIT);
    for (const r of shown) lines.push(`  ${describeRequest(r, s)}`);
    if (shown.length < rows.length) lines.push(`  … and ${rows.length - shown.length} more (--all lists them)`);
  };
  section('running', s.requests.filter((r) => r.state === 'running'));
  section('waiting', s.requests.filter((r) => r.state === 'requested' || r.state === 'pending'));
  section('results', s.requests.filter((r) => r.state === 'complete'));
  return `${lines.join('\n')}\n`;
}
