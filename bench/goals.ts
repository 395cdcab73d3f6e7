/**
 * The goals the scoreboard checks. Setting them is the lead's job (issue 7);
 * the bench only measures. `null`: no goal stated, the figure is reported
 * without a verdict. Change a goal here and nowhere else.
 */
export const goals = {
  /** W1 steps/s ÷ pgbench 64-client TPS: no goal stated. */
  w1RatioToPgbench: null as number | null,
  /** W2 start → result p50, ms: no goal stated (compared to pgbench 1-client latency). */
  w2P50Ms: null as number | null,
  /** W3 event → completion p50, ms (from the durable-waits issue). */
  w3P50Ms: 15 as number | null,
  /** W4 timer lateness p99, ms; and never early. */
  w4P99Ms: 100,
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
} as const;
