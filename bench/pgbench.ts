/**
 * The baseline: pgbench doing one-row INSERTs (one per transaction) into a
 * table in the bench database, with as many clients as the workload has runs
 * in flight. It bounds what any engine committing a journal row per step
 * could reach on this server.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";

const pgbenchPath = "/usr/bin/pgbench";

export interface PgbenchOptions {
  databaseUrl: string;
  clients: number;
  seconds: number;
}

export interface PgbenchResult {
  tps: number;
  latencyAverageMs: number | undefined;
  transactions: number | undefined;
  command: string;
}

const setup = "create table if not exists pgbench_insert(id bigserial primary key, v int, created_at timestamptz default now())";
const script = "INSERT INTO pgbench_insert(v) VALUES (1);\n";

export async function runPgbench(options: PgbenchOptions): Promise<PgbenchResult> {
  const client = new pg.Client({ connectionString: options.databaseUrl });
  await client.connect();
  try {
    await client.query(setup);
  } finally {
    await client.end();
  }

  const dir = await mkdtemp(join(tmpdir(), "cairn-bench-"));
  try {
    const scriptFile = join(dir, "insert.sql");
    await writeFile(scriptFile, script);
    const threads = Math.min(2, options.clients);
    const args = ["-n", "-M", "prepared", "-c", String(options.clients), "-j", String(threads), "-T", String(options.seconds), "-f", scriptFile];
    const stdout = await exec(pgbenchPath, [...args, options.databaseUrl], (options.seconds + 60) * 1000);
    return { ...parsePgbench(stdout), command: `pgbench ${args.join(" ")} <bench db>` };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export function parsePgbench(stdout: string): Omit<PgbenchResult, "command"> {
  const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(stdout)?.[1];
  if (tps === undefined) throw new Error(`pgbench printed no "tps = ... (without initial connection time)" line:\n${stdout}`);
  const latency = /latency average = ([\d.]+) ms/.exec(stdout)?.[1];
  const transactions = /number of transactions actually processed: (\d+)/.exec(stdout)?.[1];
  return {
    tps: Number(tps),
    latencyAverageMs: latency === undefined ? undefined : Number(latency),
    transactions: transactions === undefined ? undefined : Number(transactions),
  };
}

function exec(file: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      // error.message repeats the command line, which holds the URL (and maybe a password): leave it out.
      const how = error?.killed ? "timed out" : `exit code ${String(error?.code)}`;
      if (error) reject(new Error(`pgbench failed (${how}):\n${stderr}${stdout}`));
      else resolve(stdout);
    });
  });
}
