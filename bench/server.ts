/**
 * Cairn servers as child processes, as in production: the load generator
 * (this process) does not share their event loop.
 *
 *   node --expose-gc --import tsx --import ./bench/server-probe.ts server/main.ts
 *
 * is what `tsx server/main.ts` runs, minus tsx's wrapper process (so the pid
 * we measure is the server's), plus the probe that answers heap and
 * cpuUsage() questions over IPC. Configuration is the environment only:
 * DATABASE_URL, PORT (a free port picked here), WORKFLOW_DIRS=bench/workflows,
 * LOG_LEVEL=warn, DATABASE_POOL_SIZE, CAIRN_MAX_CONCURRENT_RUNS; any other
 * Cairn variable set when `npm run bench` starts passes through. The server
 * is ready when ListWorkflows answers. close() is SIGTERM: main.ts drains,
 * lets activations finish or releases them, and exits 0.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { createCairnClient } from "../sdk/client.js";
import { type ProcessStat, processStat } from "./proc.js";
import type { ProbeReply, ProbeRequest } from "./probe-protocol.js";

const repoRoot = fileURLToPath(new URL("..", import.meta.url));

export interface ServerSettings {
  databaseUrl: string;
  /** DATABASE_POOL_SIZE (the bench's default is 20: the server's 10 starves 64 runs in flight). */
  poolSize: number;
  /** CAIRN_MAX_CONCURRENT_RUNS. */
  maxConcurrentRuns: number;
  logLevel: string;
  /** Extra variables for this server only, over the inherited ones; undefined removes an inherited variable. */
  env?: Readonly<Record<string, string | undefined>>;
}

/** The variables a bench server gets, besides those inherited. */
export function serverEnv(settings: ServerSettings, port: number): Record<string, string> {
  return {
    DATABASE_URL: settings.databaseUrl,
    PORT: String(port),
    HOST: "127.0.0.1",
    // The bench's clients carry no key: the server runs open (allowed on a loopback HOST); key checks are in memory anyway.
    CAIRN_AUTH: "open",
    WORKFLOW_DIRS: "bench/workflows",
    LOG_LEVEL: settings.logLevel,
    DATABASE_POOL_SIZE: String(settings.poolSize),
    CAIRN_MAX_CONCURRENT_RUNS: String(settings.maxConcurrentRuns),
    // Every bench client is one peer address (open mode counts per peer): the crowded watch opens 200 streams.
    CAIRN_MAX_STREAMS_PER_CALLER: "100000",
  };
}

export class ServerProcess {
  private nextProbeId = 1;
  private readonly pending = new Map<number, (reply: ProbeReply) => void>();
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(
    readonly name: string,
    readonly url: string,
    private readonly child: ChildProcess,
    /** What the server logged (warnings and errors), by message, with counts. */
    readonly logged: ReadonlyMap<string, number>,
  ) {
    this.exited = once(child, "exit").then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
    child.on("message", (reply: ProbeReply) => {
      this.pending.get(reply.id)?.(reply);
      this.pending.delete(reply.id);
    });
  }

  /** Spawn → serving, ms. */
  startMs = Number.NaN;

  get pid(): number {
    return this.child.pid ?? -1;
  }

  static async start(name: string, settings: ServerSettings, log: (message: string) => void): Promise<ServerProcess> {
    const port = await freePort();
    const begin = performance.now();
    const child = spawn(
      process.execPath,
      [...cpuProfileFlags(), "--expose-gc", "--import", "tsx", "--import", "./bench/server-probe.ts", "server/main.ts"],
      {
        cwd: repoRoot,
        env: childEnv(settings, port),
        stdio: ["ignore", "pipe", "pipe", "ipc"],
      },
    );
    live.add(child);
    child.once("exit", () => live.delete(child));
    const logged = new Map<string, number>();
    // The server logs warnings and errors only (LOG_LEVEL=warn): each distinct one is shown once, shortened, and counted.
    for (const stream of [child.stdout, child.stderr]) {
      stream?.setEncoding("utf8");
      let partial = "";
      stream?.on("data", (chunk: string) => {
        partial += chunk;
        for (let newline = partial.indexOf("\n"); newline >= 0; newline = partial.indexOf("\n")) {
          const key = logKey(partial.slice(0, newline));
          partial = partial.slice(newline + 1);
          if (key === "") continue;
          const seen = logged.get(key) ?? 0;
          logged.set(key, seen + 1);
          if (seen === 0) log(`${name}: ${key}`);
        }
      });
    }
    const url = `http://127.0.0.1:${port}`;
    const server = new ServerProcess(name, url, child, logged);
    try {
      await waitUntilServing(url, server, 60_000);
    } catch (error) {
      child.kill("SIGKILL");
      throw error;
    }
    server.startMs = performance.now() - begin;
    started.push(server);
    return server;
  }

  hasExited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /** CPU time and RSS from /proc. */
  async stat(): Promise<ProcessStat> {
    const stat = await processStat(this.pid);
    if (!stat) throw new Error(`${this.name} (pid ${this.pid}) is gone`);
    return stat;
  }

  /** Memory (after two forced GCs if `gc`) and cpuUsage() as the process sees them. */
  probe(gc: boolean): Promise<ProbeReply> {
    const id = this.nextProbeId++;
    const request: ProbeRequest = { id, gc };
    return new Promise<ProbeReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.name}: no probe answer within 10 s`));
      }, 10_000);
      this.pending.set(id, (reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
      this.child.send(request);
    });
  }

  /** Graceful: SIGTERM, then wait for the exit (SIGKILL after `graceMs`). */
  async close(graceMs = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (!this.hasExited()) {
      this.child.kill("SIGTERM");
      const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
      const exit = await this.exited;
      clearTimeout(timer);
      return exit;
    }
    return this.exited;
  }
}

/**
 * BENCH_CPU_PROF=<dir>: every server writes V8 CPU profiles there when it exits (one file per thread: the main thread
 * and each workflow thread), for chrome://inspect or speedscope. Profiling slows a server down: not for figures.
 */
function cpuProfileFlags(): string[] {
  const dir = process.env.BENCH_CPU_PROF;
  return dir ? ["--cpu-prof", `--cpu-prof-dir=${dir}`] : [];
}

/** The inherited environment, the bench's variables, then the server's own additions and removals. */
function childEnv(settings: ServerSettings, port: number): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...serverEnv(settings, port) };
  for (const [name, value] of Object.entries(settings.env ?? {})) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  return env;
}

/** A pino line as "level: msg (first line of err.message)", anything else shortened to 300 characters. */
function logKey(line: string): string {
  if (line.trim() === "") return "";
  try {
    const record = JSON.parse(line) as { level?: number; msg?: string; err?: { message?: string } };
    const level = ({ 40: "warn", 50: "error", 60: "fatal" } as Record<number, string>)[record.level ?? 0] ?? `level ${record.level}`;
    const last = record.err?.message?.split("\n").at(-1);
    // Drizzle's "Failed query: … params: …: <cause>": keep the cause.
    const cause = last?.startsWith("params:") ? last.slice(last.lastIndexOf(": ") + 2) : last;
    return `${level}: ${record.msg ?? ""}${cause ? ` (${cause.slice(0, 200)})` : ""}`;
  } catch {
    return line.slice(0, 300);
  }
}

/** ListWorkflows answers: the store is open, migrations ran and the port listens. */
async function waitUntilServing(url: string, server: ServerProcess, timeoutMs: number): Promise<void> {
  const client = createCairnClient({ baseUrl: url, retry: false, timeoutMs: 2000 });
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (server.hasExited()) {
      const exit = await server.exited;
      throw new Error(`server process exited before serving (code ${exit.code}, signal ${exit.signal})`);
    }
    try {
      await client.listWorkflows();
      return;
    } catch (error) {
      if (performance.now() > deadline) throw new Error(`server at ${url} not serving after ${timeoutMs} ms: ${(error as Error).message}`);
    }
    await sleep(50);
  }
}

/** A port nobody listens on right now (the server binds it moments later). */
async function freePort(): Promise<number> {
  const probe = createServer();
  probe.listen(0, "127.0.0.1");
  await once(probe, "listening");
  const address = probe.address();
  probe.close();
  await once(probe, "close");
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

const live = new Set<ChildProcess>();
const started: ServerProcess[] = [];

/** What every server started so far logged (warnings and errors), by server name: message → count. */
export function serverLogs(): Record<string, Record<string, number>> {
  const logs: Record<string, Record<string, number>> = {};
  for (const server of started) if (server.logged.size > 0) logs[server.name] = Object.fromEntries(server.logged);
  return logs;
}

/** Servers left running by a crash of the bench itself are killed on exit. */
process.once("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});
