/**
 * CPU and memory of processes and of the machine, from /proc (Linux). The
 * bench runs each Cairn server as a child process, so it reads the server's
 * CPU time and RSS here rather than in the server; PostgreSQL's share is the
 * CPU time of the backends serving the bench database, sampled while a
 * workload runs.
 */
import { readFile, readdir } from "node:fs/promises";

/** USER_HZ: /proc reports CPU times in these ticks (100 on every Linux that matters). */
const ticksPerSecond = 100;

export interface ProcessStat {
  /** utime + stime of the process itself, seconds (10 ms resolution). */
  cpuSeconds: number;
  /** cutime + cstime: CPU of children it reaped (the postmaster reaps every backend), seconds. */
  childrenCpuSeconds: number;
  /** Resident set size, bytes (VmRSS of /proc/<pid>/status). */
  rssBytes: number;
}

/** utime, stime, cutime, cstime of /proc/<pid>/stat, or undefined if the process is gone. */
async function cpuTicks(pid: number): Promise<{ self: number; children: number } | undefined> {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: fields are counted after its closing parenthesis.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // fields[0] is field 3 (state); utime is field 14.
  const at = (field: number) => Number(fields[field - 3] ?? Number.NaN);
  return { self: at(14) + at(15), children: at(16) + at(17) };
}

export async function processStat(pid: number): Promise<ProcessStat | undefined> {
  const ticks = await cpuTicks(pid);
  if (!ticks) return undefined;
  let rssBytes = Number.NaN;
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const kb = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
    if (kb !== undefined) rssBytes = Number(kb) * 1024;
  } catch {
    // gone between the two reads
  }
  return { cpuSeconds: ticks.self / ticksPerSecond, childrenCpuSeconds: ticks.children / ticksPerSecond, rssBytes };
}

/** Busy and total CPU time of the whole machine so far (all cores), seconds, from the first line of /proc/stat. */
export async function machineCpu(): Promise<{ busySeconds: number; totalSeconds: number; stealSeconds: number }> {
  const text = await readFile("/proc/stat", "utf8");
  const values = (text.split("\n")[0] ?? "").trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = values;
  const busy = user + nice + system + irq + softirq + steal;
  return { busySeconds: busy / ticksPerSecond, totalSeconds: (busy + idle + iowait) / ticksPerSecond, stealSeconds: steal / ticksPerSecond };
}

/** PIDs of processes whose command name is `name` (e.g. every "postgres" process of the machine). */
export async function pidsNamed(name: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const comm = (await readFile(`/proc/${entry}/comm`, "utf8")).trim();
      if (comm === name) pids.push(Number(entry));
    } catch {
      // exited while listing
    }
  }
  return pids;
}

/**
 * CPU seconds spent by a changing set of processes over a window: each is
 * read when first seen and at every later sample; a process first seen after
 * the window began counts from zero (a new backend starts at 0). A process
 * that exits between samples loses at most one sample interval of CPU.
 */
export class CpuTally {
  private readonly first = new Map<number, number>();
  private readonly last = new Map<number, number>();
  private started = false;

  /**
   * @param withChildren also count the CPU of children the processes reaped
   *   (cutime + cstime): for the postmaster, that is every backend that exited.
   */
  constructor(private readonly withChildren = false) {}

  /** Reads every pid of `pids`. The first call marks the start of the window. */
  async sample(pids: readonly number[]): Promise<void> {
    for (const pid of pids) {
      const ticks = await cpuTicks(pid);
      if (!ticks) continue;
      const seconds = (ticks.self + (this.withChildren ? ticks.children : 0)) / ticksPerSecond;
      if (!this.first.has(pid)) this.first.set(pid, this.started ? 0 : seconds);
      this.last.set(pid, seconds);
    }
    this.started = true;
  }

  /** CPU seconds over the window, summed over every process seen. */
  seconds(): number {
    let total = 0;
    for (const [pid, last] of this.last) total += last - (this.first.get(pid) ?? last);
    return total;
  }
}
