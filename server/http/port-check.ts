/**
 * Checked before the store is opened (the first embedded store takes many seconds to create),
 * so that a port in use fails start-up at once with the fix, not after the wait.
 */
import { createServer } from "node:net";

export class PortInUseError extends Error {
  override readonly name = "PortInUseError";
}

export async function assertPortFree(host: string, port: number): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((resolve, reject) => {
    const probe = createServer();
    probe.once("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "EADDRINUSE") {
        reject(new PortInUseError(`port ${port} on ${host} is in use (another Cairn server?): stop that process or set PORT (or --port) to a free port`));
      } else {
        reject(error);
      }
    });
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve()));
  });
}
