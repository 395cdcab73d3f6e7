/**
 * Cairn's TypeScript SDK. Workflow authors use `defineWorkflow` and the
 * `WorkflowContext` types; clients use the generated service descriptors with
 * any Connect transport (a typed client helper arrives with the clients work).
 */
export {
  defineWorkflow,
  NonRetryableError,
  type AgentRequest,
  type Duration,
  type JsonObject,
  type JsonValue,
  type RetryPolicy,
  type StepContext,
  type StepOptions,
  type WaitForEventOptions,
  type WorkflowContext,
  type WorkflowDefinition,
  type WorkflowHandler,
  type WorkflowLogger,
} from "./workflow.js";
export { WorkflowService } from "./gen/cairn/v1/workflow_pb.js";
export { AgentService } from "./gen/cairn/v1/agent_pb.js";
export { RunStatus, EntryKind } from "./gen/cairn/v1/types_pb.js";
