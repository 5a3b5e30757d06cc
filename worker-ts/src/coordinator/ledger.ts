// The write-ahead privacy ledger: one fsynced JSON line per round, appended BEFORE the round's
// noisy sum can be computed by anyone (before the coordinator asks the survivors for their unmask
// shares). The ledger, not the checkpoint, is the authority on what was released:
//
//   - a crash after the append and before the sum is released over-counts one round (safe);
//   - a crash after the release and before the next checkpoint still finds the round here, so
//     after resume ε includes it even though the model restarts from the older checkpoint;
//   - a crash or a write error (a full disk) during the append leaves a torn last line. The
//     coordinator stops before releasing when the append fails, but a reader cannot tell a torn
//     line from a release whose append completed on a device that lied, so a torn last line is
//     counted conservatively: it is charged as the next round after the last intact one, with the
//     caller's worst-case event (every shard, least noise). Any other damage is an error.
//
// The first line is a header with the job's fingerprint (workers.count, sharding, dataset): rounds
// are charged per shard, so a ledger is only meaningful for the shards it was written for, and a
// resume with another partition of the data is refused rather than accounted wrongly.
import { createHash } from 'node:crypto';
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
  /** Set on the worst-case entry that stands for a torn line (ledger.ts). */
  torn?: boolean;
  /**
   * The integer mechanism as run (dp's Poisson-sampled distributed discrete Gaussian event, or a
   * non-private event without noise), for the report's rigorous integer bound.
   */
  integerEvent?: DpEvent;
  time: string;
}

/**
 * Builds the conservative entry charged for a torn last line: `round` is one past the last intact
 * entry (or past `afterRound` when there is none).
 */
export type TornEntry = (round: number) => LedgerEntry;

/** What a ledger's per-shard charges depend on; a resume must find the same. */
export interface JobFingerprint {
  workersCount: number;
  sharding: string;
  /** SHA-256 of the dataset block (paths, preset, sizes, shard key) in canonical JSON. */
  dataset: string;
}

/** The fingerprint of a run config's partition of the data. */
export function jobFingerprint(cfg: {
  workers: { count: number };
  dataset: Record<string, unknown> & { sharding?: string };
}): JobFingerprint {
  const canonical = (v: unknown): unknown =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.keys(v)
            .sort()
            .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
        )
      : v;
  return {
    workersCount: cfg.workers.count,
    sharding: cfg.dataset.sharding ?? 'hash',
    dataset: createHash('sha256')
      .update(JSON.stringify(canonical(cfg.dataset)))
      .digest('hex'),
  };
}

interface LedgerHeader {
  type: 'header';
  fingerprint: JobFingerprint;
}

function isHeader(v: unknown): v is LedgerHeader {
  return typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'header';
}

export class PrivacyLedger {
  /**
   * @param torn  the worst-case entry for a torn last line; without it a torn line is an error
   *              (never silently dropped).
   * @param afterRound  the round a torn first line follows (the checkpoint's round, or 0).
   */
  constructor(
    readonly file: string,
    private readonly torn?: TornEntry,
    public afterRound = 0,
    /** Written as the header of a new ledger and checked by `checkFingerprint`. */
    private readonly fingerprint?: JobFingerprint,
  ) {}

  /**
   * Throws CheckpointError naming what changed when the ledger was written for another
   * workers.count, sharding or dataset. A ledger without a header (older versions) passes.
   */
  checkFingerprint(): void {
    if (!this.fingerprint || !fs.existsSync(this.file)) return;
    const first = fs.readFileSync(this.file, 'utf8').split('\n', 1)[0]!;
    let head: unknown;
    try {
      head = JSON.parse(first);
    } catch {
      return; // a torn or damaged first line: read() says what is wrong with it
    }
    if (!isHeader(head)) return;
    const was = head.fingerprint;
    const now = this.fingerprint;
    const changed =
      was.workersCount !== now.workersCount
        ? `workers.count changed from ${was.workersCount} to ${now.workersCount}`
        : was.sharding !== now.sharding
          ? `dataset.sharding changed from '${was.sharding}' to '${now.sharding}'`
          : was.dataset !== now.dataset
            ? 'the dataset block (path, preset, sizes or shard key) changed'
            : undefined;
    if (changed) {
      throw new CheckpointError(
        `${this.file}: cannot resume: ${changed} since this job's privacy ledger was started; its released rounds were charged to the old shards. Use a new checkpoint.dir for a different job, or restore the old settings`,
        this.file,
      );
    }
  }

  /**
   * Entries in order, a torn last line counted as a released round (see above). Throws
   * CheckpointError for any other damaged line, or for a torn line when no `torn` was given.
   */
  read(): LedgerEntry[] {
    if (!fs.existsSync(this.file)) return [];
    const text = fs.readFileSync(this.file, 'utf8');
    const lines = text.split('\n');
    const out: LedgerEntry[] = [];
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      if (line === '') continue;
      try {
        const parsed = JSON.parse(line) as unknown;
        if (i === 0 && isHeader(parsed)) continue;
        const e = parsed as LedgerEntry;
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
        if (torn && this.torn) {
          const prev = out[out.length - 1]?.round ?? this.afterRound;
          out.push({ ...this.torn(prev + 1), torn: true });
          break;
        }
        throw new CheckpointError(
          `${this.file}:${i + 1}: damaged privacy ledger entry (${(err as Error).message}); refusing to resume without knowing what was released`,
          this.file,
          { cause: err },
        );
      }
    }
    return out;
  }

  /**
   * Replaces a torn last line by its conservative entry (see above), so that later appends start
   * on a fresh line and the charge survives every later resume.
   */
  repair(): void {
    if (!fs.existsSync(this.file)) return;
    const text = fs.readFileSync(this.file, 'utf8');
    if (text === '' || text.endsWith('\n')) return;
    const keep = this.read();
    const first = text.split('\n', 1)[0]!;
    let head = '';
    try {
      if (isHeader(JSON.parse(first))) head = first + '\n';
    } catch {
      // no header to keep
    }
    writeFileAtomic(this.file, head + keep.map((e) => JSON.stringify(e) + '\n').join(''));
  }

  append(e: LedgerEntry): void {
    // A new ledger starts with its header (appendLineDurable fsyncs the folder on creation).
    if (this.fingerprint && (!fs.existsSync(this.file) || fs.statSync(this.file).size === 0)) {
      const header: LedgerHeader = { type: 'header', fingerprint: this.fingerprint };
      appendLineDurable(this.file, JSON.stringify(header));
    }
    appendLineDurable(this.file, JSON.stringify(e));
  }
}
