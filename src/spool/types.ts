/**
 * What the spool holds, as the public API shows it: a request's states, the
 * protocol version, a result, an abort's reason. Plain declarations, kept apart
 * from the modules that read and write files (layout.ts, codec.ts,
 * abort-reason.ts re-export them), so that the package's type declarations
 * need nothing of Node's (no @types/node for a TypeScript user).
 */
import type { RequestResult } from '../queue/types.js';

export { REQUEST_STATES, ABORT_REASONS, type RequestState, type ResultStatus, type AbortReason } from '../queue/types.js';

/** The on-disk protocol version this code reads and writes. */
export const PROTOCOL_VERSION = 1;

/** A result file holds exactly what the queue interface gives a client (docs/protocol.md, *Result*). */
export type ResultEnvelope = RequestResult;
