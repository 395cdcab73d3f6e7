/**
 * The chaos workload's model: run inputs, event payloads, agent answers and
 * the output each workflow must produce. Everything is a pure function of the
 * input, so the checker knows the right output of every run (and every child)
 * without asking the engine. The workflows in chaos/workflows/ compute their
 * values with `digest` too; the *shape* of each output is written out here a
 * second time, independently of the handlers.
 */
import { createHash } from "node:crypto";

export const workflowNames = {
  steps: "chaos_steps",
  events: "chaos_events",
  child: "chaos_child",
  parent: "chaos_parent",
  agent: "chaos_agent",
  mixed: "chaos_mixed",
  poison: "chaos_poison",
} as const;

/** How a poison run breaks its thread, and the cause its pause reason must name (chaos/workflows/poison.ts). */
export const poisonCauses = {
  spin_handler: /blocked its thread for more than \d+ ms \(CAIRN_BLOCKED_CODE_MS\) in its handler/,
  spin_step: /blocked its thread for more than \d+ ms \(CAIRN_BLOCKED_CODE_MS\) in step "spin"/,
  unhandled_rejection: /crashed its activation with an unhandled rejection/,
  // On a starved machine a thread that allocates its way to the limit may be stopped by the watchdog first.
  memory: /ran its thread out of memory|blocked its thread for more than \d+ ms \(CAIRN_BLOCKED_CODE_MS\) in step "hog"/,
} as const;

export type PoisonInput = { seed: string; how: keyof typeof poisonCauses };

export type WorkloadKind = "steps" | "events" | "parent" | "agent" | "mixed";

/** The agent the chaos workers serve. */
export const agentName = "chaos_echo";

/** A short, stable value for (seed, name): what a step returns besides its execution id. */
export function digest(seed: string, name: string): string {
  return createHash("sha256").update(seed).update("\0").update(name).digest("hex").slice(0, 12);
}

/** The agent worker's answer: a pure function of the turn's text. */
export function agentAnswer(text: string): { upper: string; length: number } {
  return { upper: text.toUpperCase(), length: text.length };
}

/** The payload the driver sends for the wait `name` of the run with this seed. */
export function eventPayload(seed: string, name: string): { token: string } {
  return { token: digest(seed, `event:${name}`) };
}

export const eventTypes = { first: "chaos.first", second: "chaos.second", signal: "chaos.signal", ghost: "chaos.ghost" } as const;

export type StepsInput = { seed: string; steps: number; parallel: number; napMs: number };
export type EventsInput = { seed: string; key: string; napMs: number };
export type ChildInput = { seed: string; steps: number; napMs: number };
export type ParentInput = { seed: string; napA: number; napB: number };
export type AgentInput = { seed: string; text: string };
export type MixedInput = { seed: string; key: string; napMs: number; childNapMs: number; text: string };

export type AnyInput = StepsInput | EventsInput | ChildInput | ParentInput | AgentInput | MixedInput;

/** A random but reproducible input for run number `i` of `kind`. */
export function makeInput(kind: WorkloadKind, tag: string, i: number, random: () => number): AnyInput {
  const seed = `${tag}-${i}`;
  const between = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
  switch (kind) {
    case "steps":
      return { seed, steps: between(2, 5), parallel: between(1, 3), napMs: between(100, 2500) };
    case "events":
      return { seed, key: `ev-${seed}`, napMs: between(100, 1500) };
    case "parent":
      return { seed, napA: between(100, 2000), napB: between(100, 1200) };
    case "agent":
      return { seed, text: `question ${seed}` };
    case "mixed":
      return { seed, key: `mx-${seed}`, napMs: between(100, 3000), childNapMs: between(100, 1000), text: `mixed ${seed}` };
  }
}

/** The inputs `chaos_parent` gives its two children. */
export function parentChildInputs(input: ParentInput): { a: ChildInput; b: ChildInput } {
  return {
    a: { seed: digest(input.seed, "child-a"), steps: 2, napMs: input.napA },
    b: { seed: digest(input.seed, "child-b"), steps: 1, napMs: input.napB },
  };
}

export function mixedChildInput(input: MixedInput): ChildInput {
  return { seed: digest(input.seed, "child"), steps: 1, napMs: input.childNapMs };
}

/** What the mixed and agent workflows ask the agent. */
export function agentText(seed: string, text: string): string {
  return `${text} / ${digest(seed, "prompt")}`;
}

/** The output a run of `workflowName` with `input` must complete with. */
export function expectedOutput(workflowName: string, input: unknown): unknown {
  switch (workflowName) {
    case workflowNames.steps: {
      const i = input as StepsInput;
      return {
        kind: "steps",
        seq: range(i.steps).map((n) => digest(i.seed, `s${n}`)),
        par: range(i.parallel).map((n) => digest(i.seed, `p${n}`)),
        last: digest(i.seed, "last"),
      };
    }
    case workflowNames.events: {
      const i = input as EventsInput;
      return {
        kind: "events",
        first: eventPayload(i.seed, "first"),
        ghost: null,
        second: eventPayload(i.seed, "second"),
        values: ["before", "between", "after"].map((n) => digest(i.seed, n)),
      };
    }
    case workflowNames.child: {
      const i = input as ChildInput;
      return { kind: "child", values: [...range(i.steps).map((n) => digest(i.seed, `c${n}`)), digest(i.seed, "done")] };
    }
    case workflowNames.parent: {
      const i = input as ParentInput;
      const children = parentChildInputs(i);
      return {
        kind: "parent",
        a: expectedOutput(workflowNames.child, children.a),
        b: expectedOutput(workflowNames.child, children.b),
        values: [digest(i.seed, "prepare"), digest(i.seed, "combine")],
      };
    }
    case workflowNames.agent: {
      const i = input as AgentInput;
      return {
        kind: "agent",
        answer: agentAnswer(agentText(i.seed, i.text)),
        values: [digest(i.seed, "prompt"), digest(i.seed, "record")],
      };
    }
    case workflowNames.mixed: {
      const i = input as MixedInput;
      return {
        kind: "mixed",
        answer: agentAnswer(agentText(i.seed, i.text)),
        child: expectedOutput(workflowNames.child, mixedChildInput(i)),
        signal: eventPayload(i.seed, "signal"),
        values: [digest(i.seed, "start"), digest(i.seed, "x"), digest(i.seed, "y"), digest(i.seed, "end")],
      };
    }
    default:
      throw new Error(`no model for workflow ${workflowName}`);
  }
}

/** The events the driver sends to a run of `kind`: the wait name, the event type, and whether it targets the run. */
export function eventsFor(kind: WorkloadKind, input: AnyInput): { wait: string; eventType: string; correlationId: string; payload: { token: string } }[] {
  if (kind === "events") {
    const i = input as EventsInput;
    return [
      { wait: "first", eventType: eventTypes.first, correlationId: i.key, payload: eventPayload(i.seed, "first") },
      { wait: "second", eventType: eventTypes.second, correlationId: i.key, payload: eventPayload(i.seed, "second") },
    ];
  }
  if (kind === "mixed") {
    const i = input as MixedInput;
    return [{ wait: "signal", eventType: eventTypes.signal, correlationId: i.key, payload: eventPayload(i.seed, "signal") }];
  }
  return [];
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
