/** The shapes the runs service hands to transports (rows as the store keeps them), so no transport imports the store. */
export type { AgentTurnRow, BatchOperation, BatchRow, BatchStatus, ProcessRow, RunRow, RunStatus, WaitingOn, OverlapPolicy, ScheduleRow } from "../store/schema.js";
export { runStatuses, terminalStatuses } from "../store/schema.js";
