/**
 * A readable rendering of pino's JSON lines, for a person at a terminal (or `LOG_FORMAT=pretty`):
 * `12:03:04.567 WARN  run failed runId=… workflow=… error={"name":"Error","message":"boom"}`, with an
 * error's stack on the lines below. Small on purpose: pino-pretty would add a dozen packages for this.
 */
import type { DestinationStream } from "pino";

const levelNames: Record<number, string> = { 10: "TRACE", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "FATAL" };
const levelColours: Record<number, string> = { 10: "90", 20: "90", 30: "32", 40: "33", 50: "31", 60: "35" };
/** Fields every line carries (or that are shown elsewhere on the line). */
const hidden = new Set(["level", "time", "msg", "pid", "hostname", "service"]);

export function formatPrettyLine(line: string, colour: boolean): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.endsWith("\n") ? line : `${line}\n`;
  }
  const level = typeof record.level === "number" ? record.level : 30;
  const time = typeof record.time === "number" ? new Date(record.time).toISOString().slice(11, 23) : "";
  const name = (levelNames[level] ?? String(level)).padEnd(5);
  const paint = (code: string, text: string) => (colour ? `\u001b[${code}m${text}\u001b[0m` : text);
  const stacks: string[] = [];
  const fields: string[] = [];
  for (const [key, value] of Object.entries(record)) {
    if (hidden.has(key)) continue;
    if (value && typeof value === "object" && "stack" in value && typeof value.stack === "string") {
      // The stack repeats the message; show it once, indented, under the line.
      stacks.push(value.stack);
      const { stack: _stack, ...rest } = value as Record<string, unknown>;
      fields.push(`${key}=${JSON.stringify(rest)}`);
      continue;
    }
    fields.push(`${key}=${typeof value === "string" && /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value)}`);
  }
  const head = [paint("90", time), paint(levelColours[level] ?? "0", name), String(record.msg ?? ""), ...fields.map((f) => paint("90", f))];
  const body = stacks.map((stack) => stack.split("\n").map((l) => `    ${l}`).join("\n"));
  return `${[head.join(" "), ...body].join("\n")}\n`;
}

/** A pino destination writing pretty lines to `out` (stdout by default), coloured when it is a terminal. */
export function prettyDestination(out: NodeJS.WritableStream & { isTTY?: boolean } = process.stdout): DestinationStream {
  const colour = out.isTTY === true && !process.env.NO_COLOR;
  return { write: (line: string) => void out.write(formatPrettyLine(line, colour)) };
}
