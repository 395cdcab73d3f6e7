/** The messages between the bench and bench/server-probe.ts inside a server process. */

export interface ProbeRequest {
  id: number;
  /** Force two full GCs before sampling memory. */
  gc: boolean;
}

export interface MemorySample {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
}

export interface ProbeReply {
  id: number;
  gcForced: boolean;
  memory: MemorySample;
  /** process.cpuUsage() user + system, microseconds since the process started. */
  cpuMicros: number;
}
