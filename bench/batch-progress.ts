/**
 * A worker thread of the crowd measurement (bench/crowd.ts): reads a batch's processed count every 5 ms on a
 * connection of its own and posts each read with the times it was sent and came back. On its own thread, because the
 * bench's main thread is busy decoding thousands of streams at that moment: a read it timed itself would be sent
 * and seen late, and the bracket of every commit would widen by that delay.
 */
import { parentPort, workerData } from "node:worker_threads";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";

export interface BatchProgressInput {
  databaseUrl: string;
  batchId: string;
  selected: number;
}

export interface BatchProgressRead {
  processed: number;
  status: string;
  /** Date.now() when the read was sent and when its answer came back. */
  sent: number;
  seen: number;
}

const { databaseUrl } = workerData as { databaseUrl: string };
const client = new pg.Client({ connectionString: databaseUrl });
await client.connect();
// Started and connected before the batch is (says so with a first message, `ready`): then told which batch to follow.
const told = new Promise<Omit<BatchProgressInput, "databaseUrl">>((resolve) => parentPort?.once("message", resolve));
parentPort?.postMessage("ready");
const { batchId, selected } = await told;
try {
  for (;;) {
    const sent = Date.now();
    const { rows } = await client.query<{ processed_count: number; status: string }>("select processed_count, status from batches where id = $1", [batchId]);
    const seen = Date.now();
    const read: BatchProgressRead = { processed: Number(rows[0]?.processed_count ?? 0), status: rows[0]?.status ?? "missing", sent, seen };
    parentPort?.postMessage(read);
    if (read.processed >= selected || read.status === "failed" || read.status === "missing") break;
    await sleep(5);
  }
} finally {
  await client.end();
}
