// JSON metric lines on stdout (the Ray actors parse them), phase timing and OpenTelemetry spans.
// Lines carry only public, aggregate quantities: timings, byte counts, ε, accuracy on held-out
// data. Never batch sizes, losses or gradient statistics of one worker.
import { trace, type Span } from '@opentelemetry/api';

export const tracer = trace.getTracer('@tensorguard/worker');

export function emitLine(line: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(line) + '\n');
}

/**
 * Times named phases; each phase also runs inside an OpenTelemetry span `round.<phase>`.
 *
 * A worker's clipping time is about its private Poisson batch size over its throughput, and so is
 * anything measured from the end of clipping to a point every worker reaches at the same moment
 * (its upload's wait for the others). Such a stretch runs in a *window* (`openWindow`/
 * `closeWindow`): phases inside it are timed (their seconds still reach `exported()` when they
 * do not depend on the sample) but get no span of their own, since a span's start time would
 * reveal when clipping ended; the window is one span, `round.<window>`, that ends at the shared
 * moment, so its length depends on the sample only through the slowest worker of the round.
 */
export class PhaseTimer {
  readonly seconds: Record<string, number> = {};
  private window: { name: string; span: Span; t0: number } | undefined;
  constructor(
    private readonly attrs: Record<string, string | number> = {},
    /** Phases whose own duration depends on the private sample: never exported alone. */
    private readonly sampleDependent: readonly string[] = [],
  ) {}

  async time<T>(phase: string, f: () => Promise<T> | T): Promise<T> {
    const timed = async (): Promise<T> => {
      const t0 = performance.now();
      try {
        return await f();
      } finally {
        this.seconds[phase] = (this.seconds[phase] ?? 0) + (performance.now() - t0) / 1000;
      }
    };
    if (this.window) return timed();
    if (this.sampleDependent.includes(phase)) {
      throw new Error(`phase ${phase} depends on the private sample: time it inside a window`);
    }
    return tracer.startActiveSpan(`round.${phase}`, { attributes: this.attrs }, async (span: Span) => {
      try {
        return await timed();
      } finally {
        span.end();
      }
    });
  }

  /** Starts the window `name` (one span; the phases timed until closeWindow get none). */
  openWindow(name: string): void {
    if (this.window) throw new Error(`window ${this.window.name} is already open`);
    this.window = {
      name,
      span: tracer.startSpan(`round.${name}`, { attributes: this.attrs }),
      t0: performance.now(),
    };
  }

  /** Ends the open window at a moment all workers share (e.g. when the round's survivors are known). */
  closeWindow(): void {
    const w = this.window;
    if (!w) throw new Error('no window is open');
    this.seconds[w.name] = (this.seconds[w.name] ?? 0) + (performance.now() - w.t0) / 1000;
    w.span.end();
    this.window = undefined;
  }

  /** Whether a window is open (a round that failed mid-window closes it in its cleanup). */
  get inWindow(): boolean {
    return this.window !== undefined;
  }

  /** The seconds that may leave the process: every phase except the sample-dependent ones. */
  exported(): Record<string, number> {
    return Object.fromEntries(
      Object.entries(this.seconds).filter(([k]) => !this.sampleDependent.includes(k)),
    );
  }
}

export function rounded(x: Record<string, number>, digits = 4): Record<string, number> {
  return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, Number(v.toFixed(digits))]));
}
