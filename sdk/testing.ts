/**
 * `@cairnjs/sdk/testing`: the in-memory test environment for workflow authors (the engine core over a virtual
 * clock; no server, no database). Its sources live with the engine (server/testing, server/core); the SDK's
 * build bundles them into dist/testing.js (scripts/build-testing.mjs), so the package ships the very core the
 * server runs, and this file is the entry point both for that bundle and, in the repository, for imports of
 * `@cairnjs/sdk/testing` (the `@cairnjs/source` condition).
 */
export {
  createTestEnvironment,
  type ExportedHistory,
  type ReplayReport,
  type TestEnvironment,
  type TestEnvironmentOptions,
  type TestRun,
  type TestRunStatus,
  type TestTurn,
  type TestWorkflow,
  type WorkflowModule,
} from "../server/testing/environment.js";
