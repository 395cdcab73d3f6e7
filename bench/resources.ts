/**
 * Where the CPU went while a workload ran: each server process (from /proc),
 * this process (the load generator, process.cpuUsage()), the PostgreSQL
 * backends serving the bench database (sampled every second: their pids from
 * pg_stat_activity, their CPU from /proc), every postgres process of the
 * machine (other databases included: read at the start and the end; the
 * postmaster's cutime holds the backends that exited in between), and the
 * machine as a whole (/proc/stat). Shares are of the whole machine: CPU
 * seconds ÷ (wall seconds × cores), so they add up to at most 100 %.
 */
import { cpus, loadavg } from "node:os";
import { performance } from "node:perf_hooks";
import type { BenchProbe } from "./database.js";
import { CpuTally, machineCpu, pidsNamed } from "./proc.js";
import type { ServerProcess } from "./server.js";

export interface CpuShares {
  wallSeconds: number;
  cores: number;
  /** 1-minute load average when the window opened. */
  loadAverage: number;
  servers: { name: string; cpuSeconds: number; share: number; rssBytes: number }[];
  /** This process: the SDK clients generating the load. */
  client: { cpuSeconds: number; share: number };
  /** Backends connected to the bench database. */
  postgresBenchDb: { cpuSeconds: number; share: number };
  /** Every postgres process of the machine (WAL writer, checkpointer and other databases' backends included). */
  postgresAll: { cpuSeconds: number; share: number };
  /**
   * Busy time of all cores (anything on the machine, other engineers' tests included). `stealShare`: the part of
   * the window the hypervisor gave this machine's cores to other guests (counted in busy), a slow machine's usual cause.
   */
  machine: { busySeconds: number; share: number; stealShare: number };
}

export interface CpuWatch {
  stop(): Promise<CpuShares>;
}

export async function watchCpu(servers: readonly ServerProcess[], probe: BenchProbe): Promise<CpuWatch> {
  const cores = cpus().length;
  const loadAverage = loadavg()[0] ?? Number.NaN;
  const serversBefore = await Promise.all(servers.map((s) => s.stat()));
  const clientBefore = process.cpuUsage();
  const machineBefore = await machineCpu();
  const benchDb = new CpuTally();
  const allPostgres = new CpuTally(true);
  const sample = async () => benchDb.sample(await probe.backendPids());
  await sample();
  await allPostgres.sample(await pidsNamed("postgres"));
  const begin = performance.now();
  let sampling = Promise.resolve();
  // Once a second: scanning is cheap, but it runs in the load generator.
  const timer = setInterval(() => {
    sampling = sampling.then(sample, () => undefined);
  }, 1000);

  return {
    async stop(): Promise<CpuShares> {
      clearInterval(timer);
      await sampling;
      await sample();
      await allPostgres.sample(await pidsNamed("postgres"));
      const wallSeconds = (performance.now() - begin) / 1000;
      const client = process.cpuUsage(clientBefore);
      const machineAfter = await machineCpu();
      const serversAfter = await Promise.all(servers.map((s) => s.stat()));
      const share = (seconds: number) => seconds / (wallSeconds * cores);
      const clientSeconds = (client.user + client.system) / 1e6;
      const machineBusy = machineAfter.busySeconds - machineBefore.busySeconds;
      const machineTotal = machineAfter.totalSeconds - machineBefore.totalSeconds;
      return {
        wallSeconds,
        cores,
        loadAverage,
        servers: servers.map((server, i) => {
          const cpuSeconds = (serversAfter[i]?.cpuSeconds ?? Number.NaN) - (serversBefore[i]?.cpuSeconds ?? Number.NaN);
          return { name: server.name, cpuSeconds, share: share(cpuSeconds), rssBytes: serversAfter[i]?.rssBytes ?? Number.NaN };
        }),
        client: { cpuSeconds: clientSeconds, share: share(clientSeconds) },
        postgresBenchDb: { cpuSeconds: benchDb.seconds(), share: share(benchDb.seconds()) },
        postgresAll: { cpuSeconds: allPostgres.seconds(), share: share(allPostgres.seconds()) },
        machine: {
          busySeconds: machineBusy,
          share: machineTotal > 0 ? machineBusy / machineTotal : Number.NaN,
          stealShare: machineTotal > 0 ? (machineAfter.stealSeconds - machineBefore.stealSeconds) / machineTotal : Number.NaN,
        },
      };
    },
  };
}
