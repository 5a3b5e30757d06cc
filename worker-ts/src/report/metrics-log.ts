// `<checkpoint.dir>/metrics.jsonl`: one JSON line per released round, written by the coordinator
// for every kind of job (train, serve's Ray jobs, the demo) and read back by the job report.
//
// Only public, aggregate quantities: ε, the round's timings as the aggregator measured them, the
// bytes it received and sent, how many workers took part, and the held-out evaluation. Nothing a
// single worker's sample determines (its batch size, clip time, loss) is here: workers never send
// such values to the aggregator.
import fs from 'node:fs';

export const METRICS_FILE = 'metrics.jsonl';

/** One line of metrics.jsonl. Field names are snake_case, as in the coordinator's stdout lines. */
export interface RoundMetrics {
  /** Released rounds so far, this one included (the stdout lines' `round`). */
  round: number;
  rounds_total: number;
  /** ε spent after this round; "Infinity" for a job without noise (JSON has no Infinity). */
  epsilon: number | 'Infinity';
  /** privacy.epsilonBudget; null when the job has none. */
  epsilon_budget: number | null;
  delta: number;
  /** Wall-clock seconds from the round's opening to its metrics line. */
  round_seconds: number;
  /**
   * Seconds of each phase as the aggregator measured it: `keys` (masking: advertise and share
   * keys), `aggregate` (waiting for the masked or encrypted inputs, so the workers' sample, clip,
   * noise, encode, mask and upload of their slowest quorum), `unmask` (or the key holder's
   * decryption), `apply` (decode and optimizer step), `evaluate`, `checkpoint`.
   */
  phase_seconds: Record<string, number>;
  /** Payload bytes the aggregator received from and sent to workers during the round. */
  bytes_received: number;
  bytes_sent: number;
  /** Workers the job is configured with. */
  workers_total: number;
  /** Workers the round opened with. */
  workers_members: number;
  /** Members whose input the released sum holds (the survivors). */
  workers_alive: number;
  /** Members that dropped out of the round (workers_members − workers_alive). */
  dropouts: number;
  /** Held-out accuracy and mean cross-entropy on evaluation rounds, else null. */
  eval_accuracy: number | null;
  eval_loss: number | null;
  /** ISO time of the line. */
  time: string;
}

/**
 * Appends round lines to `file` (created 0600). A torn last line left by a crash is closed with a
 * newline first, so the next line stays readable; `readRoundMetrics` skips the torn one.
 */
export class RoundMetricsLog {
  constructor(readonly file: string) {}

  append(m: RoundMetrics): void {
    let prefix = '';
    try {
      const size = fs.statSync(this.file).size;
      if (size > 0) {
        const fd = fs.openSync(this.file, 'r');
        try {
          const last = Buffer.alloc(1);
          fs.readSync(fd, last, 0, 1, size - 1);
          if (last[0] !== 0x0a) prefix = '\n';
        } finally {
          fs.closeSync(fd);
        }
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    fs.appendFileSync(this.file, prefix + JSON.stringify(m) + '\n', { mode: 0o600 });
  }
}

/** Thrown for a metrics file that cannot be read or holds no round line. */
export class MetricsFileError extends Error {
  override name = 'MetricsFileError';
  constructor(
    message: string,
    readonly file: string,
  ) {
    super(message);
  }
}

/**
 * The round lines of a metrics.jsonl, sorted by round, one per round (a later line for the same
 * round wins: a resumed job may repeat one). Unparsable lines (a crash's torn line) are skipped
 * and counted in `skipped`. Throws MetricsFileError when the file cannot be read.
 */
export function readRoundMetrics(file: string): { rounds: RoundMetrics[]; skipped: number } {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new MetricsFileError(`cannot read ${file} (${code})`, file);
  }
  const byRound = new Map<number, RoundMetrics>();
  let skipped = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      skipped++;
      continue;
    }
    const m = v as Partial<RoundMetrics> | null;
    if (!m || typeof m !== 'object' || !Number.isInteger(m.round)) {
      skipped++;
      continue;
    }
    byRound.set(m.round!, m as RoundMetrics);
  }
  return { rounds: [...byRound.values()].sort((a, b) => a.round - b.round), skipped };
}
