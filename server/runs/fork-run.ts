/**
 * ForkRun: a new run of the source's workflow that replays the source's journal up to the named operation
 * and runs live from there, with the source's input or a new one (checked like CreateRun's). The source may
 * be in any status; it is not changed. An operation the source never reached is refused, nothing created.
 */
import { randomUUID } from "node:crypto";
import type { JsonValue } from "../../sdk/workflow.js";
import { InvalidInputError, RunControlRefusedError, RunNotFoundError } from "../core/errors.js";
import { forkRun as forkStored } from "../store/runs/fork.js";
import type { RunRow } from "../store/schema.js";
import { validateInput } from "../workflows/registry.js";
import { getRun, normalizeRunId } from "./get-run.js";
import { checkPayload } from "./payload.js";
import type { Call, RunsDeps } from "./runs-deps.js";

export interface ForkRunRequest {
  runId: string;
  fromOperation: string;
  /** Absent: the source's input. */
  input?: JsonValue | undefined;
}

export async function forkRun(deps: RunsDeps, call: Call, request: ForkRunRequest): Promise<RunRow> {
  const runId = normalizeRunId(request.runId);
  const fromOperation = request.fromOperation;
  if (fromOperation.trim() === "") throw new InvalidInputError("from_operation must name an operation of the run (a step, wait or child name as its history shows it)");
  if (request.input !== undefined) {
    const input = request.input;
    if (typeof input !== "object" || input === null || Array.isArray(input)) {
      throw new InvalidInputError(`input must be a JSON object, got ${input === null ? "null" : Array.isArray(input) ? "an array" : `a ${typeof input}`}`);
    }
    checkPayload(input, "input", { bytes: deps.maxInputBytes, setting: "CAIRN_MAX_INPUT_BYTES" });
    const source = await getRun(deps, call, runId);
    await validateInput(deps.registry.get(source.workflowName), input);
  }
  call.throwIfDeadlinePassed();
  const result = await forkStored(deps.store.db, { namespace: call.namespace, sourceRunId: runId, fromOperation, newRunId: randomUUID(), input: request.input });
  if (!result) throw new RunNotFoundError(request.runId);
  if (result.outcome === "unreached") {
    throw new RunControlRefusedError(runId, `run ${runId} never reached operation "${fromOperation}"; fork from an operation its history shows`);
  }
  deps.metrics?.runsCreated.inc({ workflow: result.run.workflowName, origin: "fork" });
  deps.feed.publishLocal(result.run.id);
  deps.worker.wake();
  return result.run;
}
