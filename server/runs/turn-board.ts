/**
 * Where long-polling agent workers wait for turns: a turn created here or
 * announced by another process (NOTIFY) wakes the waiters serving its agent.
 * Waiters also give up after a while and look again, covering notices lost
 * while a listener reconnects and leases that lapse without any notice.
 */
export class TurnBoard {
  private readonly waiters = new Set<{ agents: ReadonlySet<string>; wake: () => void }>();

  announce(agent: string): void {
    for (const waiter of this.waiters) if (waiter.agents.has(agent)) waiter.wake();
  }

  /** Resolves when a turn for one of `agents` may be available, after `ms`, or when `signal` aborts. */
  wait(agents: readonly string[], ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const waiter = { agents: new Set(agents), wake: () => done() };
      const timer = setTimeout(() => done(), ms);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
        signal.removeEventListener("abort", done);
        resolve();
      };
      signal.addEventListener("abort", done);
      this.waiters.add(waiter);
      if (signal.aborted) done();
    });
  }
}
