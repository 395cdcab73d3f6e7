/**
 * The two messages every step sends between the threads, packed. Structured clone writes every key of every object
 * and rebuilds every object on the other side: a step's append crossed as four objects (the call, its entry, the
 * ended attempt and the attempt's step), and the main thread, whose time every run shares, spent more on rebuilding
 * them than on the rest of the call. Packed, a message is a tag followed by its fields, primitives in the batch array
 * (the step's result stays a value): for 64 appends, posting took 19–34 µs instead of 104–128 and receiving 52–88 µs
 * instead of 171–297 (one MessageChannel, this VM).
 *
 * On PostgreSQL a step's append and its reply no longer cross (the thread writes the entry itself), but the entry
 * still does, once, in the thread's report of its statement (`committed`): packed the same way.
 *
 * A batch is a message alone or an array whose items are messages (objects, as they were) or packed messages (a tag
 * number, then its fields); unpacking gives back the messages in their order, equal to what was packed.
 */
import type { NewEntry, StepCompleted } from "../../core/journal.js";
import type { AttemptOutcome } from "../../core/host.js";
import { attemptOutcomes, type CommittedEntry, type EndedAttempt, type FromThread, type ToThread } from "./protocol.js";

/** A batch as posted: one message, or messages and packed messages in order. */
export type PackedBatch<M> = M | (M | number | string | unknown)[];

/** The tags of packed messages (a message is never a number, so a number starts a packed one). */
const appendStep = 1;
const replyOk = 2;
const attemptDone = 3;
const committedTag = 4;
/** In a packed `committed`: how each entry follows (a completed step's fields, or the entry as it is). */
const entryAsIs = 0;
const stepFields = 1;
const stepFieldsWithResult = 2;

const after = 1;
const hasResult = 2;
const hasAttempt = 4;

type CallMessage = Extract<FromThread, { t: "call" }>;

/** A thread's messages as one batch: the appends of completed steps packed. */
export function packFromThread(messages: FromThread[]): PackedBatch<FromThread> {
  if (messages.length === 1 && !packableAppend(messages[0] as FromThread) && !packableAttempt(messages[0] as FromThread) && messages[0]?.t !== "committed") return messages[0] as FromThread;
  const out: unknown[] = [];
  for (const message of messages) {
    if (message.t === "committed") {
      // The entries a thread's statement committed, one per step: a completed step goes as its fields.
      out.push(committedTag, message.statement, message.entries.length);
      for (const { id, sequence, createdAt, entry } of message.entries) {
        out.push(id, sequence, createdAt);
        if (entry.kind !== "step_completed" || !(entry.startedAt instanceof Date)) out.push(entryAsIs, entry);
        else if ("result" in entry) out.push(stepFieldsWithResult, entry.name, entry.attempt, entry.startedAt.getTime(), entry.result);
        else out.push(stepFields, entry.name, entry.attempt, entry.startedAt.getTime());
      }
      continue;
    }
    if (packableAttempt(message)) {
      // A step attempt that ended, told alone (the thread wrote its entry itself): its fields, as an append carries them.
      out.push(attemptDone, message.id, message.step.name, message.step.attempt, attemptOutcomes.indexOf(message.outcome), message.elapsedMs, message.step.startedAt);
      continue;
    }
    if (!packableAppend(message)) {
      out.push(message);
      continue;
    }
    const entry = message.arg as StepCompleted;
    const attempt = message.attempt;
    const flags = (message.after ? after : 0) | ("result" in entry ? hasResult : 0) | (attempt ? hasAttempt : 0);
    out.push(appendStep, message.id, message.call, flags, entry.name, entry.attempt, entry.startedAt.getTime());
    if (flags & hasResult) out.push(entry.result);
    if (attempt) out.push(attemptOutcomes.indexOf(attempt.outcome), attempt.elapsedMs, attempt.step.startedAt);
  }
  return out;
}

/** The messages of a thread's batch, in order. */
export function unpackFromThread(batch: PackedBatch<FromThread>): FromThread[] {
  if (!Array.isArray(batch)) return [batch];
  const messages: FromThread[] = [];
  for (let i = 0; i < batch.length; ) {
    const item = batch[i++];
    if (item === committedTag) {
      const statement = batch[i++] as number;
      const count = batch[i++] as number;
      const entries: CommittedEntry[] = [];
      for (let n = 0; n < count; n++) {
        const id = batch[i++] as number;
        const sequence = batch[i++] as number;
        const createdAt = batch[i++] as number;
        const form = batch[i++] as number;
        let entry: NewEntry;
        if (form === entryAsIs) entry = batch[i++] as NewEntry;
        else {
          const name = batch[i++] as string;
          const attempt = batch[i++] as number;
          const startedAt = new Date(batch[i++] as number);
          entry = form === stepFieldsWithResult ? { kind: "step_completed", name, attempt, startedAt, result: batch[i++] as StepCompleted["result"] } : { kind: "step_completed", name, attempt, startedAt };
        }
        entries.push({ id, sequence, createdAt, entry });
      }
      messages.push({ t: "committed", statement, entries });
      continue;
    }
    if (item === attemptDone) {
      const id = batch[i++] as number;
      const name = batch[i++] as string;
      const attemptNumber = batch[i++] as number;
      const outcome = attemptOutcomes[batch[i++] as number] as AttemptOutcome;
      const elapsedMs = batch[i++] as number;
      const startedAt = batch[i++] as number | undefined;
      messages.push({ t: "attempt_done", id, step: startedAt === undefined ? { name, attempt: attemptNumber } : { name, attempt: attemptNumber, startedAt }, outcome, elapsedMs });
      continue;
    }
    if (item !== appendStep) {
      messages.push(item as FromThread);
      continue;
    }
    const id = batch[i++] as number;
    const call = batch[i++] as number;
    const flags = batch[i++] as number;
    const name = batch[i++] as string;
    const attemptNumber = batch[i++] as number;
    const startedAt = new Date(batch[i++] as number);
    const entry: StepCompleted = flags & hasResult ? { kind: "step_completed", name, attempt: attemptNumber, startedAt, result: batch[i++] as StepCompleted["result"] } : { kind: "step_completed", name, attempt: attemptNumber, startedAt };
    const message: CallMessage = flags & after ? { t: "call", id, call, op: "append", arg: entry, after: true } : { t: "call", id, call, op: "append", arg: entry };
    if (flags & hasAttempt) {
      const outcome = attemptOutcomes[batch[i++] as number] as AttemptOutcome;
      const elapsedMs = batch[i++] as number;
      const attemptStartedAt = batch[i++] as number | undefined;
      const ended: EndedAttempt = { step: attemptStartedAt === undefined ? { name, attempt: attemptNumber } : { name, attempt: attemptNumber, startedAt: attemptStartedAt }, outcome, elapsedMs };
      message.attempt = ended;
    }
    messages.push(message);
  }
  return messages;
}

/** The main thread's messages to a thread as one batch: replies to appends packed. */
export function packToThread(messages: ToThread[]): PackedBatch<ToThread> {
  if (messages.length === 1 && !packableReply(messages[0] as ToThread)) return messages[0] as ToThread;
  const out: unknown[] = [];
  for (const message of messages) {
    if (packableReply(message)) out.push(replyOk, message.id, message.call);
    else out.push(message);
  }
  return out;
}

/** The messages of the main thread's batch, in order. */
export function unpackToThread(batch: PackedBatch<ToThread>): ToThread[] {
  if (!Array.isArray(batch)) return [batch];
  const messages: ToThread[] = [];
  for (let i = 0; i < batch.length; ) {
    const item = batch[i++];
    if (item !== replyOk) {
      messages.push(item as ToThread);
      continue;
    }
    messages.push({ t: "reply", id: batch[i++] as number, call: batch[i++] as number, ok: true, value: undefined });
  }
  return messages;
}

/**
 * An append of a completed step whose ended attempt (if any) is that step's: packed, the attempt's name and number
 * are the entry's. Anything else (another entry, an attempt of another step) crosses as it is.
 */
function packableAppend(message: FromThread): message is CallMessage {
  if (message.t !== "call" || message.op !== "append") return false;
  const entry = message.arg as { kind?: unknown; name?: unknown; attempt?: unknown; startedAt?: unknown };
  if (entry.kind !== "step_completed" || !(entry.startedAt instanceof Date)) return false;
  const step = message.attempt?.step;
  return step === undefined || (step.name === entry.name && step.attempt === entry.attempt && step.timeout === undefined);
}

/** A step attempt without a timeout that ended, told alone. */
function packableAttempt(message: FromThread): message is Extract<FromThread, { t: "attempt_done" }> {
  return message.t === "attempt_done" && message.step.timeout === undefined;
}

/** A reply to an append: ok, with no value. */
function packableReply(message: ToThread): message is Extract<ToThread, { t: "reply"; ok: true }> {
  return message.t === "reply" && message.ok && message.value === undefined;
}
