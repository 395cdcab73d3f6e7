/**
 * Child processes of this repository's TypeScript entry points (`node --import tsx <file>`), shared by the
 * test support (server-process.ts) and the chaos run (chaos/processes.ts). Every process started here is
 * SIGKILLed at exit if it is still running, so a failing test or chaos run never leaves servers behind.
 */
import { type ChildProcessByStdio, spawn } from "node:child_process";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";

export const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

export type TsxProcess = ChildProcessByStdio<null, Readable, Readable>;

const live = new Set<TsxProcess>();

process.once("exit", () => {
  for (const child of live) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
});

/** Starts `node --import tsx ...args` in the repository root with `env` on top of this process's environment. */
export function spawnTsx(
  args: readonly string[],
  env: Record<string, string | undefined>,
  options: { cwd?: string | undefined; plainNode?: boolean | undefined } = {},
): TsxProcess {
  const merged: Record<string, string | undefined> = { ...process.env, ...env };
  // The child is not a test file: don't let it think it runs under a test runner.
  delete merged.NODE_TEST_CONTEXT;
  delete merged.VITEST;
  delete merged.VITEST_WORKER_ID;
  delete merged.VITEST_POOL_ID;
  // plainNode: compiled JavaScript (the build), without tsx.
  const nodeArgs = options.plainNode ? [...args] : ["--import", "tsx", ...args];
  const child = spawn(process.execPath, nodeArgs, { cwd: options.cwd ?? repoRoot, env: merged, stdio: ["ignore", "pipe", "pipe"] });
  live.add(child);
  child.once("exit", () => live.delete(child));
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  return child;
}

/** Calls `onLine` with each complete line `stream` writes (without its newline). */
export function eachLine(stream: Readable, onLine: (line: string) => void): void {
  let partial = "";
  stream.on("data", (chunk: string) => {
    const lines = (partial + chunk).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) onLine(line);
  });
}
