/**
 * What a workflow thread is running right now, in memory it shares with the main thread, so that the watchdog can
 * read it while the thread is stuck and cannot answer: the activation whose code was last entered, and the step
 * whose function was last called in it (its attempt, its timeout deadline, its name). The thread writes it on every
 * entry into a run's code (a few stores, no message); the main thread reads it only when it stops the thread.
 */
const bytes = 256;
const nameOffset = 24;
const nameCapacity = bytes - nameOffset;
const encoder = new TextEncoder();

export class RunningSlot {
  private readonly ints: Int32Array;
  private readonly deadline: Float64Array;
  private readonly name: Uint8Array;

  constructor(readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(bytes)) {
    // [0] activation, [1] attempt key, (bytes 8-15: the deadline), [4] the name's length in bytes.
    this.ints = new Int32Array(buffer, 0, 5);
    this.deadline = new Float64Array(buffer, 8, 1);
    this.name = new Uint8Array(buffer, nameOffset, nameCapacity);
  }

  /** The activation's code runs (outside any step function we know of). */
  enter(activation: number): void {
    this.ints[0] = activation;
    this.ints[1] = 0;
    this.deadline[0] = 0;
  }

  /** The activation calls a step function: attempt `key`, which may run until `deadline` (epoch ms; 0: no timeout). */
  enterStep(activation: number, key: number, name: string, deadline: number): void {
    this.ints[0] = activation;
    this.ints[1] = key;
    this.deadline[0] = deadline;
    this.ints[4] = encoder.encodeInto(name, this.name).written;
  }

  get activation(): number {
    return this.ints[0] as number;
  }

  /** The step attempt last entered, if the code running is in a step function. */
  get step(): { key: number; name: string; deadline: number } | undefined {
    const key = this.ints[1] as number;
    if (key === 0) return undefined;
    const name = new TextDecoder().decode(this.name.slice(0, this.ints[4] as number));
    return { key, name, deadline: this.deadline[0] as number };
  }
}
