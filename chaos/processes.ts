/**
 * Child processes of the chaos run: Cairn servers (`node --import tsx
 * server/main.ts`) and agent workers (chaos/agent-worker.ts). Each slot keeps
 * its process alive: when it exits (killed by the chaos run, or failed to
 * start while PostgreSQL was down), a new incarnation starts on the same port
 * with the same environment. Everything a slot's processes print goes to one
 * log file per slot (an incarnation header before each), and the last lines
 * stay in memory for failure reports.
 */
import type { ChildProcess } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { eachLine, repoRoot, spawnTsx } from "../test/support/processes.js";

export { repoRoot };

export interface SlotOptions {
  name: string;
  /** Arguments after `node --import tsx`. */
  args: string[];
  env: Record<string, string>;
  logPath: string;
  /** Whether a stdout line says the process is ready (a server listening, a worker polling). */
  isReady(line: string): boolean;
  /** Delay before a new incarnation after an exit. */
  restartDelayMs(): number;
}

export interface UnexpectedExit {
  slot: string;
  incarnation: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  at: Date;
  /** It had logged that it was ready before it died. */
  afterReady: boolean;
}

export class ProcessSlot {
  readonly name: string;
  private child: ChildProcess | undefined;
  private ready = false;
  private readyWaiters: (() => void)[] = [];
  private stopping = false;
  private killedByUs = new WeakSet<ChildProcess>();
  private readonly log: WriteStream;
  private readonly tailLines: string[] = [];
  private restartTimer: NodeJS.Timeout | undefined;
  incarnations = 0;
  /** Starts that ended before the process was ready (e.g. PostgreSQL down during migrations). */
  failedStarts = 0;
  readonly unexpectedExits: UnexpectedExit[] = [];
  /** Log records at level error or fatal (pino 50+), by message. */
  readonly errorsLogged = new Map<string, number>();
  /** Log records at level warn (pino 40), by message: fence refusals of a woken stale holder, among others. */
  readonly warningsLogged = new Map<string, number>();
  /** Every incarnation's process id, in order (a server's lease owner id names it: host:pid:random). */
  readonly pids: number[] = [];

  constructor(private readonly options: SlotOptions) {
    this.name = options.name;
    this.log = createWriteStream(options.logPath, { flags: "a" });
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  isReady(): boolean {
    return this.ready && this.child !== undefined;
  }

  /** Starts the first incarnation; later ones start by themselves after each exit. */
  start(): void {
    this.stopping = false;
    this.spawn();
  }

  /** Resolves once an incarnation is ready (or rejects after `timeoutMs`). */
  waitReady(timeoutMs: number): Promise<void> {
    if (this.isReady()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${this.name} was not ready within ${timeoutMs} ms; last output:\n${this.tail(30).join("\n")}`)),
        timeoutMs,
      );
      this.readyWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** SIGKILLs the current incarnation; resolves when it has exited. A new one starts after the restart delay. */
  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<boolean> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return false;
    this.killedByUs.add(child);
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill(signal);
    await exited;
    return true;
  }

  /** Sends `signal` (SIGSTOP, SIGCONT) to the current incarnation; false if none is running. */
  signal(signal: NodeJS.Signals): boolean {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return false;
    return child.kill(signal);
  }

  /** Stops restarting and SIGKILLs the current incarnation. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    await this.kill("SIGKILL");
    await new Promise<void>((resolve) => this.log.end(resolve));
  }

  /** The last `n` lines the slot's processes printed. */
  tail(n: number): string[] {
    return this.tailLines.slice(-n);
  }

  get logPath(): string {
    return this.options.logPath;
  }

  private spawn(): void {
    const incarnation = ++this.incarnations;
    this.ready = false;
    this.note(`==== chaos: ${this.name} incarnation ${incarnation} starting at ${new Date().toISOString()}`);
    const child = spawnTsx(this.options.args, this.options.env);
    this.child = child;
    if (child.pid !== undefined) this.pids.push(child.pid);
    child.stdout.on("data", (chunk: string) => this.log.write(chunk));
    child.stderr.on("data", (chunk: string) => this.log.write(chunk));
    eachLine(child.stdout, (line) => this.line(child, line));
    eachLine(child.stderr, (line) => this.line(child, line));
    child.once("exit", (code, signal) => {
      const wasReady = this.ready && this.child === child;
      if (this.child === child) {
        this.child = undefined;
        this.ready = false;
      }
      this.note(`==== chaos: ${this.name} incarnation ${incarnation} exited (${signal ? `signal ${signal}` : `code ${code}`}) at ${new Date().toISOString()}`);
      if (!wasReady) this.failedStarts += this.killedByUs.has(child) ? 0 : 1;
      else if (!this.killedByUs.has(child) && !this.stopping) {
        this.unexpectedExits.push({ slot: this.name, incarnation, code, signal, at: new Date(), afterReady: true });
      }
      if (!this.stopping) this.restartTimer = setTimeout(() => this.spawn(), wasReady ? this.options.restartDelayMs() : 500);
    });
  }

  /** One line the process printed: kept for the tail, counted if it is an error record, checked for readiness. */
  private line(child: ChildProcess, line: string): void {
    this.remember(line);
    const counted = line.startsWith('{"level":5') || line.startsWith('{"level":6') ? this.errorsLogged : line.startsWith('{"level":4') ? this.warningsLogged : undefined;
    if (counted) {
      try {
        const record = JSON.parse(line) as { msg?: unknown };
        const msg = String(record.msg ?? "?");
        counted.set(msg, (counted.get(msg) ?? 0) + 1);
      } catch {
        // not a pino record
      }
    }
    if (!this.ready && this.child === child && this.options.isReady(line)) {
      this.ready = true;
      for (const waiter of this.readyWaiters.splice(0)) waiter();
    }
  }

  private note(line: string): void {
    this.log.write(`${line}\n`);
    this.remember(line);
  }

  private remember(line: string): void {
    this.tailLines.push(line);
    if (this.tailLines.length > 400) this.tailLines.splice(0, this.tailLines.length - 400);
  }
}

