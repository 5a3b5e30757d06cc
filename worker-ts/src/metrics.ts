// JSON metric lines on stdout (the Ray actors parse them), phase timing and OpenTelemetry spans.
// Lines carry only public, aggregate quantities: timings, byte counts, ε, accuracy on held-out
// data. Never batch sizes, losses or gradient statistics of one worker.
import { trace, type Span } from '@opentelemetry/api';

export const tracer = trace.getTracer('@tensorguard/worker');

export function emitLine(line: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(line) + '\n');
}

/** Times named phases; each phase also runs inside an OpenTelemetry span `round.<phase>`. */
export class PhaseTimer {
  readonly seconds: Record<string, number> = {};
  constructor(private readonly attrs: Record<string, string | number> = {}) {}

  async time<T>(phase: string, f: () => Promise<T> | T): Promise<T> {
    return tracer.startActiveSpan(`round.${phase}`, { attributes: this.attrs }, async (span: Span) => {
      const t0 = performance.now();
      try {
        return await f();
      } finally {
        this.seconds[phase] = (this.seconds[phase] ?? 0) + (performance.now() - t0) / 1000;
        span.end();
      }
    });
  }
}

export function rounded(x: Record<string, number>, digits = 4): Record<string, number> {
  return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, Number(v.toFixed(digits))]));
}
