/**
 * `cairn schedules create|list|get|pause|unpause|trigger|backfill|delete`: ScheduleService through the SDK.
 */
import type { CairnClient, ScheduleInfo, ScheduleSpecOptions } from "../../sdk/index.js";
import type { ScheduleOverlap } from "../../sdk/workflow.js";
import { isJsonObject, jsonOption, UsageError } from "../args.js";
import { type Command, ExitCode, flag, jsonDocument, stringValue } from "../command.js";
import { duration, table, timestamp } from "../format.js";

const overlaps: readonly ScheduleOverlap[] = ["skip", "buffer_one", "allow_all", "cancel_other"];

function details(s: ScheduleInfo): string {
  const lines = [
    `schedule   ${s.scheduleId}${s.declared ? " (declared in a workflow file)" : ""}`,
    `workflow   ${s.workflowName}`,
    `when       ${s.cron ? `cron "${s.cron}" (${s.timezone})` : `every ${duration(s.everyMs ?? 0)}`}${s.jitterMs ? `, jitter ${duration(s.jitterMs)}` : ""}`,
    `overlap    ${s.overlap}`,
    `catch-up   ${duration(s.catchupWindowMs)}`,
    `status     ${s.paused ? "paused" : "active"}`,
    `next fire  ${s.nextFireAt ? timestamp(s.nextFireAt) : "-"}`,
    `last fire  ${s.lastFireAt ? `${timestamp(s.lastFireAt)} (run ${s.lastRunId ?? "-"})` : "-"}`,
    `skipped    ${s.skippedFires}`,
    `input      ${JSON.stringify(s.input)}`,
  ];
  if (s.bufferedFireAt) lines.push(`buffered   ${timestamp(s.bufferedFireAt)}`);
  return lines.join("\n");
}

function date(text: string | undefined, name: string): Date {
  const value = text === undefined ? Number.NaN : Date.parse(text);
  if (Number.isNaN(value)) throw new UsageError(`--${name} needs an ISO-8601 time, e.g. 2026-01-01T00:00:00Z`);
  return new Date(value);
}

export const schedulesCreate: Command = {
  name: "schedules create",
  summary: "create a schedule that starts a workflow's runs on a cron or every interval",
  usage: "<schedule-id> <workflow> (--cron EXPR [--timezone TZ] | --every DURATION) [--input JSON] [--overlap POLICY] [--jitter D] [--catchup-window D] [--paused]",
  optionHelp: [
    ["--cron EXPR", 'cron expression, 5 fields (or 6 with seconds first), e.g. "0 9 * * MON-FRI"'],
    ["--timezone TZ", "IANA time zone of the cron (default UTC), e.g. Europe/Berlin"],
    ["--every DURATION", "fire every interval instead, e.g. 30s, 1h"],
    ["--input JSON", "the runs' input (a JSON object)"],
    ["--overlap POLICY", `when the previous run is still going: ${overlaps.join(", ")} (default skip)`],
    ["--jitter DURATION", "delay each fire by a random 0..DURATION"],
    ["--catchup-window DURATION", "make up fires missed while no server ran if at most this late (default 1m)"],
    ["--paused", "create it paused"],
  ],
  options: {
    cron: { type: "string" },
    timezone: { type: "string" },
    every: { type: "string" },
    input: { type: "string" },
    overlap: { type: "string" },
    jitter: { type: "string" },
    "catchup-window": { type: "string" },
    paused: { type: "boolean" },
  },
  positionals: ["schedule-id", "workflow"],
  async run(context, values, [scheduleId = "", workflow = ""]) {
    const input = await jsonOption(stringValue(values, "input"), undefined, "input");
    if (input !== undefined && !isJsonObject(input)) throw new UsageError("--input must be a JSON object");
    const overlap = stringValue(values, "overlap");
    if (overlap !== undefined && !overlaps.includes(overlap as ScheduleOverlap)) throw new UsageError(`--overlap must be one of ${overlaps.join(", ")}`);
    const spec: ScheduleSpecOptions = { workflow };
    const set = <K extends keyof ScheduleSpecOptions>(key: K, value: ScheduleSpecOptions[K] | undefined) => {
      if (value !== undefined) spec[key] = value;
    };
    set("cron", stringValue(values, "cron"));
    set("timezone", stringValue(values, "timezone"));
    set("every", stringValue(values, "every"));
    set("jitter", stringValue(values, "jitter"));
    set("catchupWindow", stringValue(values, "catchup-window"));
    set("overlap", overlap as ScheduleOverlap | undefined);
    if (input !== undefined) spec.input = input as ScheduleSpecOptions["input"];
    const schedule = await context.client().schedules.create(scheduleId, spec, { paused: flag(values, "paused") });
    context.io.out(context.json ? jsonDocument(schedule) : details(schedule));
    return ExitCode.ok;
  },
};

export const schedulesList: Command = {
  name: "schedules list",
  summary: "list the namespace's schedules",
  usage: "[--workflow NAME]",
  options: { workflow: { type: "string" } },
  positionals: [],
  async run(context, values) {
    const workflow = stringValue(values, "workflow");
    const schedules = await context.client().schedules.list(workflow ? { workflow } : {});
    if (context.json) context.io.out(jsonDocument(schedules));
    else if (schedules.length === 0) context.io.out("no schedules");
    else
      context.io.out(
        table(
          ["SCHEDULE ID", "WORKFLOW", "WHEN", "STATUS", "NEXT FIRE", "LAST RUN"],
          schedules.map((s) => [
            s.scheduleId,
            s.workflowName,
            s.cron ? `${s.cron} (${s.timezone})` : `every ${duration(s.everyMs ?? 0)}`,
            s.paused ? "paused" : "active",
            s.nextFireAt ? timestamp(s.nextFireAt) : "-",
            s.lastRunId ?? "-",
          ]),
        ),
      );
    return ExitCode.ok;
  },
};

function oneSchedule(name: string, summary: string, call: (client: CairnClient, id: string) => Promise<ScheduleInfo>): Command {
  return {
    name,
    summary,
    usage: "<schedule-id>",
    options: {},
    positionals: ["schedule-id"],
    async run(context, _values, [scheduleId = ""]) {
      const schedule = await call(context.client(), scheduleId);
      context.io.out(context.json ? jsonDocument(schedule) : details(schedule));
      return ExitCode.ok;
    },
  };
}

export const schedulesGet = oneSchedule("schedules get", "show a schedule: spec, next and last fire, skipped fires", (c, id) => c.schedules.get(id));
export const schedulesPause = oneSchedule("schedules pause", "stop a schedule's fires until unpaused", (c, id) => c.schedules.pause(id));
export const schedulesUnpause = oneSchedule(
  "schedules unpause",
  "resume a schedule from its next fire time (the paused period is not made up)",
  (c, id) => c.schedules.unpause(id),
);

export const schedulesTrigger: Command = {
  name: "schedules trigger",
  summary: "start one run of a schedule now",
  usage: "<schedule-id>",
  options: {},
  positionals: ["schedule-id"],
  async run(context, _values, [scheduleId = ""]) {
    const runId = await context.client().schedules.trigger(scheduleId);
    context.io.out(context.json ? jsonDocument({ runId }) : runId);
    return ExitCode.ok;
  },
};

export const schedulesBackfill: Command = {
  name: "schedules backfill",
  summary: "start the runs of a schedule's fire times in a past range (fire times that had their run are not repeated)",
  usage: "<schedule-id> --start TIME --end TIME",
  optionHelp: [
    ["--start TIME", "first instant of the range (ISO-8601)"],
    ["--end TIME", "last instant of the range (ISO-8601, not in the future)"],
  ],
  options: { start: { type: "string" }, end: { type: "string" } },
  positionals: ["schedule-id"],
  async run(context, values, [scheduleId = ""]) {
    const result = await context.client().schedules.backfill(scheduleId, date(stringValue(values, "start"), "start"), date(stringValue(values, "end"), "end"));
    context.io.out(context.json ? jsonDocument(result) : `${result.fireTimes} fire times, ${result.created} runs created (${result.fireTimes - result.created} had theirs)`);
    return ExitCode.ok;
  },
};

export const schedulesDelete: Command = {
  name: "schedules delete",
  summary: "delete a schedule (its runs are left alone)",
  usage: "<schedule-id>",
  options: {},
  positionals: ["schedule-id"],
  async run(context, _values, [scheduleId = ""]) {
    await context.client().schedules.delete(scheduleId);
    context.io.out(context.json ? jsonDocument({ deleted: scheduleId }) : `deleted schedule ${scheduleId}`);
    return ExitCode.ok;
  },
};

export const scheduleCommands: readonly Command[] = [
  schedulesCreate,
  schedulesList,
  schedulesGet,
  schedulesPause,
  schedulesUnpause,
  schedulesTrigger,
  schedulesBackfill,
  schedulesDelete,
];
