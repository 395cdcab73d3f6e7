/**
 * LOG_FORMAT=pretty (the default when stdout is a terminal): one readable line per pino record,
 * "12:04:05.123 INFO  message  key=value ...", with an error's stack indented below it. JSON
 * (LOG_FORMAT=json, the default otherwise) stays the format for log collectors and tests.
 */
import type { DestinationStream } from "pino";

export type LogFormat = "json" | "pretty";

const levelNames: Record<number, string> = { 10: "TRACE", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "FATAL" };
const levelColors: Record<number, string> = { 10: "90", 20: "90", 30: "32", 40: "33", 50: "31", 60: "41;97" };

/** LOG_FORMAT's value, or why it is not one. */
export function logFormat(value: string | undefined, terminal: boolean): LogFormat {
  if (value === undefined || value === "") return terminal ? "pretty" : "json";
  if (value === "json" || value === "pretty") return value;
  throw new Error(`LOG_FORMAT must be json or pretty, got ${JSON.stringify(value)}`);
}

export function prettyDestination(out: NodeJS.WritableStream & { isTTY?: boolean } = process.stdout): DestinationStream {
  const color = Boolean(out.isTTY) && !process.env.NO_COLOR;
  const paint = (code: string, text: string): string => (color ? `\u001b[${code}m${text}\u001b[0m` : text);
  return {
    write(line: string) {
      let record: Record<string, unknown>;
      try {
        record = JSON.parse(line) as Record<string, unknown>;
      } catch {
        out.write(line);
        return;
      }
      const { level, time, msg, err, pid: _pid, service: _service, ...fields } = record;
      const levelNumber = typeof level === "number" ? level : 30;
      const clock = new Date(typeof time === "number" ? time : Date.now()).toTimeString().slice(0, 8);
      const name = (levelNames[levelNumber] ?? String(level)).padEnd(5);
      const rest = Object.entries(fields)
        .map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`)
        .join(" ");
      let text = `${paint("90", clock)} ${paint(levelColors[levelNumber] ?? "0", name)} ${String(msg ?? "")}`;
      if (rest) text += `  ${paint("90", rest)}`;
      const stack = (err as { stack?: string; message?: string } | undefined)?.stack ?? (err as { message?: string } | undefined)?.message;
      if (stack) text += `\n${stack.replace(/^/gm, "    ")}`;
      out.write(`${text}\n`);
    },
  };
}
