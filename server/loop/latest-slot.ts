/**
 * One stage of the frame loop with latest-frame-wins back-pressure: at most one item runs and at
 * most one waits. An item offered while another waits replaces it and counts as dropped, so no
 * queue can grow and latency stays flat under overload.
 */
export class LatestSlot<T> {
  private running = false;
  /** The run loop while one is under way. */
  private loop?: Promise<void>;
  private waiting: T | undefined;
  private hasWaiting = false;
  private stopped = false;

  constructor(
    private readonly run: (item: T) => Promise<void>,
    private readonly onDrop: (item: T) => void = () => {},
  ) {}

  get busy(): boolean {
    return this.running;
  }

  offer(item: T): void {
    if (this.stopped) return;
    if (!this.running) {
      this.loop = this.start(item);
      return;
    }
    if (this.hasWaiting) this.onDrop(this.waiting as T);
    this.waiting = item;
    this.hasWaiting = true;
  }

  private async start(item: T): Promise<void> {
    this.running = true;
    let next: T | undefined = item;
    let have = true;
    while (have && !this.stopped) {
      try {
        await this.run(next as T);
      } catch {
        // The stage reports its own failures; the loop must keep serving newer frames regardless.
      }
      have = this.hasWaiting;
      next = this.waiting;
      this.waiting = undefined;
      this.hasWaiting = false;
    }
    this.running = false;
  }

  /**
   * Takes no more items and drops the waiting one; resolves once the running one has finished, so
   * that what it uses (a renderer's onnxruntime sessions) is freed only after it.
   */
  stop(): Promise<void> {
    this.stopped = true;
    if (this.hasWaiting) this.onDrop(this.waiting as T);
    this.waiting = undefined;
    this.hasWaiting = false;
    return this.running && this.loop ? this.loop : Promise.resolve();
  }
}
