/**
 * Real Cairn server processes for multi-process tests (crash recovery,
 * fencing, graceful shutdown).
 *
 * `startServerProcess()` spawns `node --import tsx server/main.ts` from the
 * repository root with PORT=0 and short leases, and resolves once the server
 * logged "cairn server listening" (its pino JSON line carries the URL). Every
 * process started here is remembered: call `stopAllServerProcesses()` from an
 * `after` hook so a failing test never leaves servers behind; a process-exit
 * hook SIGKILLs any that are still alive as a last resort.
 */
import { delimiter, resolve } from "node:path";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { type Run, RunStatus } from "../../sdk/gen/cairn/v1/types_pb.js";
import { WorkflowService } from "../../sdk/gen/cairn/v1/workflow_pb.js";
import { eachLine, repoRoot, spawnTsx, type TsxProcess } from "./processes.js";

export { repoRoot };

export interface ServerProcessOptions {
  databaseUrl: string;
  /** Folders with workflow files, relative to the repository root or absolute. */
  workflowDirs: string | readonly string[];
  /** Extra or overriding environment variables. */
  env?: Record<string, string>;
  /** A label for error messages. */
  name?: string;
  /** What node runs: by default the sources through tsx; ["dist/server/main.js"] runs the build. */
  entry?: readonly string[];
  /** The server's working directory (default the repository root). */
  cwd?: string;
  /** How long to wait for "cairn server listening" (default 30 s). */
  startTimeoutMs?: number;
}

export interface ServerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ServerProcess {
  readonly name: string;
  readonly url: string;
  readonly pid: number;
  /** The scheduler's lease owner id, from the "cairn server listening" line. */
  readonly owner: string;
  kill(signal?: NodeJS.Signals): void;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<ServerExit>;
  /** True once the process has exited. */
  hasExited(): boolean;
  /** Everything the process wrote to stdout and stderr so far. */
  logs(): string;
  /** The stdout lines that parsed as JSON (pino records). */
  logRecords(): Record<string, unknown>[];
}

/** Leases short enough that a killed process's runs move on within seconds. */
export const fastLeaseEnv: Record<string, string> = {
  CAIRN_LEASE_MS: "1500",
  CAIRN_POLL_INTERVAL_MS: "100",
};

/** Processes started here and not yet exited, for stopAllServerProcesses (processes.ts kills them at exit). */
const live = new Set<TsxProcess>();

let counter = 0;

export async function startServerProcess(options: ServerProcessOptions): Promise<ServerProcess> {
  const name = options.name ?? `server-${++counter}`;
  const dirs = (typeof options.workflowDirs === "string" ? [options.workflowDirs] : [...options.workflowDirs]).map((dir) =>
    resolve(repoRoot, dir),
  );
  const entry = options.entry?.map((arg) => (/\.[mc]?[jt]s$/.test(arg) ? resolve(repoRoot, arg) : arg));
  const child = spawnTsx(entry ?? ["server/main.ts"], {
    ...fastLeaseEnv,
    PORT: "0",
    HOST: "127.0.0.1",
    LOG_LEVEL: "info",
    // Open mode (no API keys) unless options.env sets CAIRN_AUTH.
    CAIRN_AUTH: "open",
    DATABASE_URL: options.databaseUrl,
    WORKFLOW_DIRS: dirs.join(delimiter),
    ...options.env,
  }, { cwd: options.cwd, plainNode: entry !== undefined });
  live.add(child);

  let output = "";
  const records: Record<string, unknown>[] = [];
  let exitedAlready = false;
  let onListening: ((record: Record<string, unknown>) => void) | undefined;

  const exited = new Promise<ServerExit>((resolveExit) => {
    child.once("exit", (code, signal) => {
      exitedAlready = true;
      live.delete(child);
      resolveExit({ code, signal });
    });
  });

  child.stdout.on("data", (chunk: string) => {
    output += chunk;
  });
  eachLine(child.stdout, (line) => {
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch {
      return;
    }
    if (typeof record !== "object" || record === null) return;
    const rec = record as Record<string, unknown>;
    records.push(rec);
    if (rec.msg === "cairn server listening") onListening?.(rec);
  });
  child.stderr.on("data", (chunk: string) => {
    output += chunk;
  });

  const timeoutMs = options.startTimeoutMs ?? 30_000;
  let timer: NodeJS.Timeout | undefined;
  try {
    const listening = await Promise.race([
      new Promise<Record<string, unknown>>((resolveListening) => {
        onListening = resolveListening;
      }),
      exited.then((exit) => {
        throw new Error(`${name} exited before listening (${describeExit(exit)}); output:\n${output}`);
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${name} did not log "cairn server listening" within ${timeoutMs} ms; output:\n${output}`)),
          timeoutMs,
        );
      }),
    ]);
    const url = listening.url;
    if (typeof url !== "string") throw new Error(`${name}: listening line has no url: ${JSON.stringify(listening)}`);
    const pid = child.pid;
    if (pid === undefined) throw new Error(`${name}: no pid`);
    return {
      name,
      url,
      pid,
      owner: typeof listening.owner === "string" ? listening.owner : "",
      kill(signal: NodeJS.Signals = "SIGTERM") {
        if (!exitedAlready) child.kill(signal);
      },
      exited,
      hasExited: () => exitedAlready,
      logs: () => output,
      logRecords: () => records,
    };
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  } finally {
    clearTimeout(timer);
    onListening = undefined;
  }
}

/** SIGKILLs every process started here that is still running and waits for them to exit. */
export async function stopAllServerProcesses(): Promise<void> {
  const children = [...live];
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolveStop) => {
          if (child.exitCode !== null || child.signalCode !== null) {
            live.delete(child);
            resolveStop();
            return;
          }
          child.once("exit", () => resolveStop());
          child.kill("SIGKILL");
        }),
    ),
  );
}

export function describeExit(exit: ServerExit): string {
  return exit.signal ? `signal ${exit.signal}` : `exit code ${exit.code}`;
}

export type WorkflowClient = Client<typeof WorkflowService>;

export function createWorkflowClient(url: string): WorkflowClient {
  return createClient(WorkflowService, createConnectTransport({ baseUrl: url, httpVersion: "1.1" }));
}

/** Polls GetRun until the run's status is one of `statuses`; throws with the last status seen on timeout. */
export async function waitForRun(
  client: WorkflowClient,
  runId: string,
  statuses: readonly RunStatus[],
  timeoutMs: number,
  intervalMs = 50,
): Promise<Run> {
  const deadline = Date.now() + timeoutMs;
  let last: Run | undefined;
  let lastError: unknown;
  for (;;) {
    try {
      const { run } = await client.getRun({ runId });
      last = run;
      if (run && statuses.includes(run.status)) return run;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) {
      const want = statuses.map((s) => RunStatus[s]).join(" | ");
      const seen = last ? RunStatus[last.status] : `no answer (${String(lastError)})`;
      throw new Error(`run ${runId} did not reach ${want} within ${timeoutMs} ms; last status: ${seen}`);
    }
    await sleep(intervalMs);
  }
}

/** Polls `probe` until it returns a value other than undefined; throws `describe()` on timeout. */
export async function waitFor<T>(
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
  describe: () => string,
  intervalMs = 25,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms: ${describe()}`);
    await sleep(intervalMs);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolveSleep) => setTimeout(resolveSleep, ms));
}
