/** Where the BullMQ rows' queue is, and how their processes connect to it. */

/** A BullMQ queue on a Redis server. */
export interface BullQueueAt {
  host: string;
  port: number;
  queue: string;
}

/** ioredis options as BullMQ wants them for workers and blocking connections (no retry limit per command). */
export function bullConnection(at: BullQueueAt): { host: string; port: number; maxRetriesPerRequest: null } {
  return { host: at.host, port: at.port, maxRetriesPerRequest: null };
}
