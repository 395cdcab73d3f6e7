/**
 * The worker's one wake-up timer, armed for the earliest deadline it knows
 * (timers and backoffs of runs parked here). When it fires, the next
 * remembered deadline is armed at once, so timers parked here fire on time
 * one after another without a round trip to find the next one. Deadlines set
 * by other processes are not known here: `onFire` asks the store for them.
 */

/** Deadlines remembered (8 bytes each); beyond this, new ones are left to the store's next-due read. */
const maxRememberedDeadlines = 100_000;
/** setTimeout's ceiling; a later deadline is re-armed by the poll. */
const maxTimerMs = 2 ** 31 - 1;

export class DeadlineTimer {
  private readonly deadlines = new DeadlineHeap(maxRememberedDeadlines);
  private timer: ReturnType<typeof setTimeout> | undefined;
  private armedAt: number | undefined;
  private stopped = false;

  constructor(private readonly onFire: () => void) {}

  /** Arms the timer for `at` (or `aheadMs` before it) if that is earlier than the one armed, and remembers it. */
  note(at: Date, aheadMs = 0): void {
    if (this.stopped) return;
    this.deadlines.push(at.getTime() - aheadMs);
    this.arm();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private arm(): void {
    const next = this.deadlines.peek();
    if (next === undefined || (this.armedAt !== undefined && this.armedAt <= next)) return;
    clearTimeout(this.timer);
    this.armedAt = next;
    this.timer = setTimeout(() => {
      this.armedAt = undefined;
      const now = Date.now();
      while ((this.deadlines.peek() ?? Infinity) <= now) this.deadlines.pop();
      this.onFire();
      this.arm();
    }, Math.min(Math.max(0, next - Date.now()), maxTimerMs));
  }
}

/** A binary min-heap of instants (ms), bounded: when full, new instants are not kept. */
class DeadlineHeap {
  private readonly items: number[] = [];

  constructor(private readonly max: number) {}

  peek(): number | undefined {
    return this.items[0];
  }

  push(time: number): void {
    // Full: not remembered; after each firing the store's next deadline is read, which finds it in time.
    if (this.items.length >= this.max) return;
    const items = this.items;
    items.push(time);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (items[parent]! <= items[i]!) break;
      [items[parent], items[i]] = [items[i]!, items[parent]!];
      i = parent;
    }
  }

  pop(): number | undefined {
    const top = this.items[0];
    if (top !== undefined) this.removeAt(0);
    return top;
  }

  private removeAt(index: number): void {
    const items = this.items;
    const last = items.pop()!;
    if (index === items.length) return;
    items[index] = last;
    // Restore the heap around `index`: up, then down.
    let i = index;
    while (i > 0 && items[(i - 1) >> 1]! > items[i]!) {
      const parent = (i - 1) >> 1;
      [items[parent], items[i]] = [items[i]!, items[parent]!];
      i = parent;
    }
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let smallest = i;
      if (left < items.length && items[left]! < items[smallest]!) smallest = left;
      if (right < items.length && items[right]! < items[smallest]!) smallest = right;
      if (smallest === i) break;
      [items[smallest], items[i]] = [items[i]!, items[smallest]!];
      i = smallest;
    }
  }
}
