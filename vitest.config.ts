/**
 * Test layers, one vitest project each (docs/testing.md): core (pure, no database, no sockets), core again in
 * always-replay mode, rpc (services through a router transport), integration (PostgreSQL, PGlite, store, worker)
 * and e2e (real processes, browser, TLS, HTTP/2, gRPC clients); and the README's test of the example workflows.
 */
import { defineConfig } from "vitest/config";

const layer = (name: string, include = [`test/${name}/**/*.test.ts`], env: Record<string, string> = {}) => ({
  extends: true as const,
  test: { name, include, env },
});

export default defineConfig({
  resolve: { conditions: ["@cairnjs/source", "module", "node", "development|production"] },
  ssr: { resolve: { conditions: ["@cairnjs/source", "module", "node", "development|production"] } },
  test: {
    // Forks, not threads: the server's workflow loader imports workflow .ts files at run time, which plain Node
    // only can with tsx's loader; and test files spawn processes and change process-wide state.
    pool: "forks",
    // In the repository @cairnjs/sdk resolves to its TypeScript sources (the `@cairnjs/source` export condition), for
    // Node's own resolution in the forks as for vite's below.
    execArgv: ["--conditions=@cairnjs/source", "--import", "tsx"],
    // One file at a time: files share one PostgreSQL server and a 2-core machine; their timing assumptions
    // (leases, long polls) hold only without a neighbour eating the CPU.
    fileParallelism: false,
    // node:test had no per-test limit; these suites start servers, processes and browsers.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
    projects: [
      layer("core"),
      // The core's activation tests and recorded histories again, each run replayed from the top at every entry.
      layer("core:always-replay", ["test/core/engine.test.ts", "test/core/histories.test.ts"], { CAIRN_ALWAYS_REPLAY: "1" }),
      layer("rpc"),
      layer("integration"),
      layer("e2e"),
      // The example workflows tested with @cairnjs/sdk/testing, as README.md shows (pure: no database, no sockets).
      layer("examples", ["examples/**/*.test.ts"]),
    ],
  },
});
