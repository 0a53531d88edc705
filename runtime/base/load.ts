// The load factor HEARTBEAT reports: the busier of event-loop utilisation and in-flight work against capacity.
import { performance } from "node:perf_hooks";

export class LoadGauge {
  private last = performance.eventLoopUtilization();
  private utilisation = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly capacity: number,
    private readonly inflight: () => number,
  ) {
    // Sampled once a second so that a heartbeat reads a recent window, not the process's whole life.
    this.timer = setInterval(() => {
      const now = performance.eventLoopUtilization();
      this.utilisation = performance.eventLoopUtilization(now, this.last).utilization;
      this.last = now;
    }, 1_000);
    this.timer.unref();
  }

  /** 0 = idle, 1 = at capacity; may exceed 1 when more work is in flight than the configured capacity. */
  factor(): number {
    const work = this.inflight() / this.capacity;
    return Math.round(Math.max(work, this.utilisation) * 1000) / 1000;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
