/**
 * What a queue on Redis shows: the servers alive, a status snapshot, one
 * request's progress, read from wq's keys and BullMQ's lists (one LRANGE of
 * the line for a snapshot; LPOS, run inside Redis, for one place in line).
 */
import { requestIdTimeMs } from '../queue/request-id.js';
import type { QueueStatus, RequestProgress, RequestState, RequestStatus, ServerStatus } from '../queue/types.js';
import type { RedisClient } from './connect.js';
import { parseRecord, queueHold, type QueueKeys, type RunningRecord, type ServerRecord } from './keys.js';

/** The servers alive (their `alive` key has not expired: Redis's clock decides), oldest first. */
export async function liveServers(redis: RedisClient, keys: QueueKeys): Promise<ServerRecord[]> {
  const all = await redis.hgetall(keys.servers);
  const ids = Object.keys(all);
  if (ids.length === 0) return [];
  const alive = await redis.mget(ids.map((id) => keys.alive(id)));
  return ids
    .filter((_, i) => alive[i] !== null)
    .map((id) => parseRecord<ServerRecord>(all[id]))
    .filter((r): r is ServerRecord => r !== undefined)
    .sort((a, b) => a.startedAt - b.startedAt);
}

/** Every request with its place in line, what holds the line, run time or result age; `location` names the queue. */
export async function queueStatus(redis: RedisClient, keys: QueueKeys, location: string, nowMs: number): Promise<QueueStatus> {
  const [waitIds, activeIds, runningHash, results, globalMax] = await Promise.all([
    redis.lrange(keys.wait, 0, -1),
    redis.lrange(keys.active, 0, -1),
    redis.hgetall(keys.running),
    redis.zrange(keys.results, 0, -1, 'WITHSCORES'),
    redis.hget(keys.meta, 'concurrency'),
  ]);
  const servers = await liveServers(redis, keys);
  const requests: RequestStatus[] = [];
  const waiting = [...waitIds].reverse(); // BullMQ pushes at the head and takes from the tail
  const heldBy = queueHold(servers, activeIds.length, globalMax === null ? undefined : Number(globalMax));
  waiting.forEach((id, i) => requests.push({ id, state: 'pending', submittedAt: requestIdTimeMs(id), position: i + 1, ...(heldBy ? { heldBy } : {}) }));
  const alive = new Set(servers.map((s) => s.id));
  for (const id of [...activeIds].reverse()) {
    const record = parseRecord<RunningRecord>(runningHash[id]);
    const entry: RequestStatus = { id, state: 'running', submittedAt: requestIdTimeMs(id) };
    if (record !== undefined) {
      entry.runningSeconds = Math.max(0, nowMs - record.startedAt) / 1000;
      if (record.pid !== undefined) entry.pid = record.pid;
      if (!alive.has(record.server)) entry.interrupted = true;
    }
    requests.push(entry);
  }
  for (let i = 0; i < results.length; i += 2) {
    const id = results[i]!;
    requests.push({ id, state: 'complete', submittedAt: requestIdTimeMs(id), waitingSeconds: Math.max(0, nowMs - Number(results[i + 1])) / 1000 });
  }
  // An abort filed for a request still waiting or running: not carried out yet.
  const live = requests.filter((r) => r.state !== 'complete');
  const markers = live.length === 0 ? [] : await redis.mget(live.map((r) => keys.abort(r.id)));
  live.forEach((r, i) => {
    if (markers[i] !== null) r.aborting = true;
  });
  const status = (s: ServerRecord): ServerStatus => ({ pid: s.pid, host: s.host, startedAt: s.startedAt, uptimeSeconds: (nowMs - s.startedAt) / 1000, maxTasks: s.maxTasks, alive: true });
  return {
    spool: location,
    server: servers[0] === undefined ? null : status(servers[0]),
    servers: servers.map((s) => ({ ...status(s), running: s.running })),
    counts: { requested: 0, pending: waiting.length, running: activeIds.length, complete: results.length / 2, aborting: live.filter((r) => r.aborting).length },
    requests,
  };
}

/** One request's progress, given the state it was found in. */
export async function requestProgress(redis: RedisClient, keys: QueueKeys, id: string, state: RequestState | undefined): Promise<RequestProgress> {
  if (state === 'pending') {
    // LPOS runs in Redis, without sending the list: the place in line is the distance from the tail.
    const [index, length] = await Promise.all([redis.lpos(keys.wait, id), redis.llen(keys.wait)]);
    if (index === null) return { state: undefined };
    const progress: RequestProgress = { state: 'pending', position: length - index, waiting: length };
    const [servers, running, globalMax] = await Promise.all([liveServers(redis, keys), redis.llen(keys.active), redis.hget(keys.meta, 'concurrency')]);
    const heldBy = queueHold(servers, running, globalMax === null ? undefined : Number(globalMax));
    if (heldBy !== undefined) progress.heldBy = heldBy;
    return progress;
  }
  if (state === 'running') {
    const record = parseRecord<RunningRecord>(await redis.hget(keys.running, id));
    if (record !== undefined && !(await liveServers(redis, keys)).some((s) => s.id === record.server)) return { state: 'running', interrupted: true };
    return { state: 'running', sinceMs: record?.startedAt };
  }
  return { state: state as 'complete' | undefined }; // 'requested' is a spool state only
}
