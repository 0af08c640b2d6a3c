/** The public API of spool-workqueue. Explicit named exports only. */
export { WorkQueueClient, resolveClientOptions, resultValue } from './client.js';
export type { WorkQueueClientOptions, EnqueueOptions, WaitOptions, RequestResult } from './client.js';
export type { AbortOutcome, ConfirmAbortOptions } from './client.js';
export { WorkQueueServer, resolveServerOptions } from './server.js';
export type { WorkQueueServerOptions, ProcessRequestsOptions } from './server.js';
export type { InterruptedPolicy } from './protocol.js';
export type { ManagerHold, QueueHold } from './queue/types.js';
export type { AbortPolicy } from './spool/permissions.js';
export type { TaskManager, TaskManagerEvent, TaskOutcome, TaskProcess } from './task-manager/types.js';
export type { TaskInput, AcceptedVariables } from './task-input.js';
export { InProcessTaskManager } from './task-manager/in-process.js';
export type { InProcessTaskManagerOptions, TaskHandler, TaskContext } from './task-manager/in-process.js';
export { ProcessPoolTaskManager, WorkerCrashedError, HandlerLoadError } from './task-manager/process-pool.js';
export type { ProcessPoolTaskManagerOptions } from './task-manager/process-pool.js';
export { CommandTaskManager, CommandError } from './task-manager/command.js';
export { LoadAwareTaskManager } from './task-manager/load-aware.js';
export type { LoadAwareTaskManagerOptions } from './task-manager/load-aware.js';
export type { CommandTaskManagerOptions, CommandRequest, CommandResult } from './task-manager/command.js';
export {
  WorkQueueError,
  WorkQueueTimeoutError,
  WorkQueueCancelledError,
  UnknownRequestError,
  SpoolLockedError,
  SpoolError,
  ProtocolError,
  RequestTooLargeError,
  ForeignRequestError,
  InvalidOptionError,
  TaskFailedError,
  OutputLimitError,
  DiskFullError,
  AbortRefusedError,
} from './errors.js';
export type { SerializedError } from './errors.js';
export { PROTOCOL_VERSION } from './spool/types.js';
export { REQUEST_STATES } from './queue/types.js';
export type { RequestState, ResultStatus, AbortReason } from './queue/types.js';
export { isRequestId } from './queue/request-id.js';
export type { IdSource } from './queue/request-id.js';
export { RequestIdGenerator } from './spool/request-id.js';
export { createLineLogger, silentLogger } from './logger.js';
export type { Logger, LogLevel, LogFields } from './logger.js';
export { DURATION_BUCKETS_S, METER_NAME, METRIC_ATTRIBUTES, METRIC_NAMES, ServerMetrics, type MetricsStamps } from './metrics.js';
export type { FinishStatus, KillReason, QueueSnapshot } from './metrics.js';
