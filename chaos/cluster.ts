/**
 * The chaos run's own PostgreSQL: a throwaway embedded cluster (test/support/embedded-postgres.ts, shared with
 * the test suite) on a fixed free port (the same across its restarts, so server processes reconnect to the same
 * URL), never the machine's shared server. `restart()` stops it (fast shutdown: every backend is terminated)
 * and starts it again on the same data directory. `destroy()` stops it and removes the data directory; an exit
 * hook does the same if the chaos run dies first.
 *
 * Differences from the test suite's cluster: persistent across restarts, `track_commit_timestamp=on` (the
 * ledger check compares step start times with journal commit times), synchronous_commit left on (the run
 * checks that answered requests survive a restart).
 */
import { createEmbeddedCluster } from "../test/support/embedded-postgres.js";
import { freePort } from "../test/support/postgres.js";

export { freePort };

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

export async function startCluster(dataDir: string): Promise<ChaosCluster> {
  const port = await freePort();
  const cluster = await createEmbeddedCluster({
    dataDir,
    port,
    persistent: true,
    settings: { track_commit_timestamp: "on", max_connections: "300" },
  });
  await cluster.start();
  return {
    port,
    dataDir,
    url: (database, applicationName) => `${cluster.url(database)}?application_name=${encodeURIComponent(applicationName)}`,
    async restart(downMs: number) {
      await cluster.stop();
      await new Promise((resolve) => setTimeout(resolve, downMs));
      await cluster.start();
    },
    destroy: () => cluster.destroy(),
    recentLog: () => cluster.recentLog(),
  };
}
