/**
 * The goals the scoreboard checks: issue 7's (the durable-waits issue asked
 * for less: W3 p50 < 15 ms, timers p99 < 100 ms at 1,000 runs). The bench
 * only measures. `null`: no goal stated, the figure is reported
 * without a verdict. Change a goal here and nowhere else.
 */
export const goals = {
  /** W1 steps/s ÷ pgbench 64-client TPS. */
  w1RatioToPgbench: 0.6 as number | null,
  /** W2 start → result, ms. */
  w2P50Ms: 3 as number | null,
  w2P99Ms: 10,
  /** W3 SendEvent reply → completion seen by the client, ms. */
  w3P50Ms: 3 as number | null,
  w3P99Ms: 10,
  /** W4 timer lateness p99, ms; and never early. */
  w4P99Ms: 20,
  /** Schedule fire lateness p99 with 1,000 schedules every 10 s (issue 14), ms. */
  scheduleP99Ms: 50,
  /** Server RSS growth with the parked runs, MiB. */
  parkedRssMiB: 50,
  /** "Near zero" idle CPU of the server with the runs parked, read as ≤ 1 % of one core (10 ms of CPU per second). */
  idleCpuMsPerSecond: 10,
  /** Per-step cost, slowest ÷ fastest run length. */
  replayPerStepRatio: 1.5,
  /** A 1,000-step run resumed after a restart: event reply → first new step journaled, ms. */
  resumeFirstStepMs: 200,
  /** W1 through two server processes ÷ through one. */
  twoServerRatio: 1.6,
  /** The wire table (issue 18): W1 ÷ pgbench 64-client TPS through grpc-js (and fetch), and through the SDK. */
  wireW1Ratio: 1.0,
  wireW1SdkRatio: 1.5,
  /** Server CPU per W2 run on the gRPC path, ms. */
  wireW2ServerCpuMs: 2.5,
  /** A crowd of 10,000 watch streams on parked runs (issue 18): server RSS they add, decimal MB; a change to every run, p99 from its commit to its stream, ms. */
  crowdAddedRssMB: 100,
  crowdDeliveryP99Ms: 100,
  /** The price of workflow isolation (issue 12): W1 with the thread pool ÷ W1 on the main thread, and W2, W3 p50 with it − without, ms. */
  isolationW1Ratio: 0.9,
  isolationP50DeltaMs: 0.5,
} as const;
