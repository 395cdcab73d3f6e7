/**
 * Cairn's TypeScript SDK. Workflow authors use `defineWorkflow` and the
 * `WorkflowContext` types; services, agents and browsers use `createCairnClient`
 * (or the generated service descriptors with any Connect transport).
 */
export {
  AgentTurnFailedError,
  ChildWorkflowFailedError,
  defineWorkflow,
  InvalidDurationError,
  NonRetryableError,
  parseDuration,
  type AgentRequest,
  type AgentWaitOptions,
  type Duration,
  type JsonObject,
  type JsonValue,
  type RetryPolicy,
  type StepContext,
  type StartWorkflowOptions,
  type StepOptions,
  type WaitForEventOptions,
  type WorkflowContext,
  type WorkflowDefinition,
  type WorkflowHandler,
  type WorkflowLogger,
} from "./workflow.js";
export {
  apiKeyInterceptor,
  createCairnClient,
  workflowRef,
  type CairnClient,
  type CairnClientOptions,
  type CreateRunOptions,
  type EventNearMissInfo,
  type HistoryEntryInfo,
  type ListRunsFilter,
  type ListRunsPage,
  type BatchInfo,
  type BatchOperationName,
  type RunSelector,
  type StartBatchInput,
  type StartBatchResult,
  type RequestOptions,
  type NearMissReasonName,
  type RetryOptions,
  type RetryRunOptions,
  type ForkRunOptions,
  type RunExplanation,
  type RunHandle,
  type RunInfo,
  type RunStatusName,
  type RunUpdate,
  type SendEventInput,
  type SendEventResult,
  type ServerProcessInfo,
  type TypedWorkflow,
  type WaitForResultOptions,
  type WaitingOnInfo,
  type WaitKindName,
  type WatchRunOptions,
  type WorkflowInfo,
  type WorkflowInput,
  type WorkflowOutput,
  type WorkflowRef,
} from "./client.js";
export {
  CairnError,
  Code,
  codeName,
  RunCancelledError,
  RunFailedError,
  WaitTimeoutError,
  type CairnErrorOptions,
  type RunFailure,
} from "./errors.js";
export { createAgentWorker, type AgentHandler, type AgentTurnInput, type AgentWorker, type AgentWorkerOptions } from "./agent-worker.js";
export { WorkflowService } from "./gen/cairn/v1/workflow_pb.js";
export { ScheduleService, Overlap } from "./gen/cairn/v1/schedules_pb.js";
export { createScheduleClient, scheduleInfo, type ScheduleClient, type ScheduleInfo, type ScheduleSpecOptions } from "./schedules.js";
export { AgentService } from "./gen/cairn/v1/agent_pb.js";
export { RunStatus, EntryKind } from "./gen/cairn/v1/types_pb.js";
