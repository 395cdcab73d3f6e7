/**
 * Runs an async task one at a time: a request while it runs asks for exactly one more run after it, however many
 * requests came meanwhile (so a timer firing during a slow pass loses nothing and starts no second pass beside it).
 */
export class CoalescedTask {
  private running: Promise<void> | undefined;
  private again = false;

  constructor(private readonly task: () => Promise<void>) {}

  /** Whether a run is in progress. */
  get busy(): boolean {
    return this.running !== undefined;
  }

  request(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.task().finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        this.request();
      }
    });
  }
}
