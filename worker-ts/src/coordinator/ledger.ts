// The write-ahead privacy ledger: one fsynced JSON line per round, appended BEFORE the round's
// noisy sum can be computed by anyone (before the coordinator asks the survivors for their unmask
// shares). The ledger, not the checkpoint, is the authority on what was released:
//
//   - a crash after the append and before the sum is released over-counts one round (safe);
//   - a crash after the release and before the next checkpoint still finds the round here, so
//     after resume ε includes it even though the model restarts from the older checkpoint;
//   - a crash during the append leaves a torn last line; the release had not happened (it waits
//     for the fsync), so the torn line is dropped, and any other damage is an error.
import fs from 'node:fs';
import { appendLineDurable, writeFileAtomic } from '../checkpoint/atomic.js';
import { CheckpointError } from '../checkpoint/errors.js';
import type { DpEvent } from '@tensorguard/dp';
import type { RoundEvent } from './privacy.js';

export interface LedgerEntry extends RoundEvent {
  /** Configured quorum t and noise multiplier σ, for the privacy report. */
  quorum: number;
  /**
   * Declared colluders c (privacy.colluders): noiseMultiplier is that of the survivors − c honest
   * shares. Absent in ledgers written before it existed (then 0).
   */
  colluders?: number;
  configuredNoiseMultiplier: number;
  /**
   * The integer mechanism as run (dp's Poisson-sampled distributed discrete Gaussian event, or a
   * non-private event without noise), for the report's rigorous integer bound.
   */
  integerEvent?: DpEvent;
  time: string;
}

export class PrivacyLedger {
  constructor(readonly file: string) {}

  /** Entries in order. Throws CheckpointError for a damaged line other than a torn last one. */
  read(): LedgerEntry[] {
    if (!fs.existsSync(this.file)) return [];
    const text = fs.readFileSync(this.file, 'utf8');
    const lines = text.split('\n');
    const out: LedgerEntry[] = [];
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      if (line === '') continue;
      try {
        const e = JSON.parse(line) as LedgerEntry;
        if (
          !Number.isInteger(e.round) ||
          typeof e.noiseMultiplier !== 'number' ||
          typeof e.samplingRate !== 'number'
        ) {
          throw new Error('missing fields');
        }
        out.push(e);
      } catch (err) {
        const torn = i === lines.length - 1 && !text.endsWith('\n');
        if (torn) break;
        throw new CheckpointError(
          `${this.file}:${i + 1}: damaged privacy ledger entry (${(err as Error).message}); refusing to resume without knowing what was released`,
          this.file,
          { cause: err },
        );
      }
    }
    return out;
  }

  /** Drops a torn last line (see above) so later appends start on a fresh line. */
  repair(): void {
    if (!fs.existsSync(this.file)) return;
    const text = fs.readFileSync(this.file, 'utf8');
    if (text === '' || text.endsWith('\n')) return;
    const keep = this.read();
    writeFileAtomic(this.file, keep.map((e) => JSON.stringify(e) + '\n').join(''));
  }

  append(e: LedgerEntry): void {
    appendLineDurable(this.file, JSON.stringify(e));
  }
}
