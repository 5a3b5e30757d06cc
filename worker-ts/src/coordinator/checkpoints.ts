// The coordinator's durable model state in checkpoint.dir: checkpoints (the model, the optimizer
// and the accountant's events at a round, saved atomically by checkpoint/store.ts) and metrics.jsonl
// (one line per released round, for people). The privacy ledger and report in the same folder are
// the release gate's (release-gate.ts).
import path from 'node:path';
import { tensor, type NamedTensor } from '../checkpoint/safetensors.js';
import { loadLatestCheckpoint, saveCheckpoint } from '../checkpoint/store.js';
import { mkdirPrivate } from '../checkpoint/atomic.js';
import type { RunConfig } from '../config.js';
import type { Logger } from '../logger.js';
import type { ModelDef } from '../models/model.js';
import { METRICS_FILE, RoundMetricsLog, type RoundMetrics } from '../report/metrics-log.js';
import type { LedgerEntry } from './ledger.js';
import type { ModelState } from './model-state.js';

export interface CheckpointsOptions {
  config: RunConfig;
  def: ModelDef;
  /** Every parameter's initial values: the frozen ones are saved from here. */
  initial: Record<string, Float32Array>;
  /** The base model's fingerprint; a checkpoint of another base model is refused. */
  fingerprint: string;
  log: Logger;
}

/** What a restored checkpoint adds to the accountant: its round and its recorded events. */
export interface RestoredCheckpoint {
  dir: string;
  round: number;
  events: LedgerEntry[];
}

/** The accountant's state a checkpoint records beside the model. */
export interface AccountantSnapshot {
  events: readonly LedgerEntry[];
  epsilon: number;
}

export class Checkpoints {
  readonly dir: string;
  readonly #o: CheckpointsOptions;
  readonly #metrics: RoundMetricsLog;
  #last: string | null = null;

  /** Creates checkpoint.dir (owner-only) when it does not exist. */
  constructor(o: CheckpointsOptions) {
    this.#o = o;
    this.dir = o.config.checkpoint.dir;
    mkdirPrivate(this.dir);
    this.#metrics = new RoundMetricsLog(path.join(this.dir, METRICS_FILE));
  }

  /** The folder of the last checkpoint saved or restored, or null. */
  get last(): string | null {
    return this.#last;
  }

  /**
   * Restores `model` from the latest checkpoint that verifies (an older one when the latest is
   * corrupt, logged), and returns its round and accountant events; null when there is none.
   * Throws CheckpointError (naming the file) for a checkpoint of another base model, or when no
   * checkpoint verifies.
   */
  restore(model: ModelState): RestoredCheckpoint | null {
    const ck = loadLatestCheckpoint(this.dir, { baseModelFingerprint: this.#o.fingerprint }, (msg, detail) =>
      this.#o.log.warn(detail, msg),
    );
    if (!ck) return null;
    const named: Record<string, Float32Array> = {};
    for (const s of model.specs) named[s.name] = ck.model[s.name]!.data as Float32Array;
    const slots: Record<string, Float32Array> = {};
    for (const [k, t] of Object.entries(ck.optimizer)) if (k !== 'step') slots[k] = t.data as Float32Array;
    const step = ck.optimizer.step ? Number((ck.optimizer.step.data as Float64Array)[0]) : 0;
    model.restore(named, { step, slots }, ck.manifest.round);
    this.#last = ck.dir;
    const st = ck.manifest.accountant as { events?: LedgerEntry[] } | undefined;
    this.#o.log.info({ checkpoint: ck.dir, round: ck.manifest.round }, 'resumed from checkpoint');
    return { dir: ck.dir, round: ck.manifest.round, events: st?.events ?? [] };
  }

  /** Saves `model` at its version with the accountant's events; returns the checkpoint's folder. */
  save(model: ModelState, accountant: AccountantSnapshot): string {
    const cfg = this.#o.config;
    const def = this.#o.def;
    const named: Record<string, Float32Array> = { ...this.#o.initial, ...model.named() };
    const tensors: Record<string, NamedTensor> = {};
    for (const p of def.params) tensors[p.name] = tensor(Float32Array.from(named[p.name]!), p.shape);
    const st = model.optimizerState();
    const optimizer: Record<string, NamedTensor> = { step: tensor(Float64Array.from([st.step])) };
    for (const [k, v] of Object.entries(st.slots)) optimizer[k] = tensor(v);
    this.#last = saveCheckpoint(this.dir, {
      manifest: {
        round: model.version,
        baseModelFingerprint: this.#o.fingerprint,
        model: {
          kind: def.kind,
          trainable: model.specs.map((s) => s.name),
          parameters: model.params.length,
        },
        tensors: def.params.map((p) => ({ name: p.name, shape: p.shape, dtype: 'F32' })),
        optimizer: { kind: model.optimizerKind, step: st.step },
        dp: {
          clipNorm: cfg.privacy.clipNorm,
          noiseMultiplier: cfg.privacy.noiseMultiplier,
          delta: cfg.privacy.delta,
          samplingRate: cfg.privacy.samplingRate,
          epsilonBudget: cfg.privacy.epsilonBudget,
          accountant: cfg.privacy.accountant,
        },
        accountant: { kind: `dp-${cfg.privacy.accountant}-per-shard`, events: [...accountant.events] },
        epsilon: Number.isFinite(accountant.epsilon) ? accountant.epsilon : null,
      },
      model: tensors,
      optimizer,
    });
    return this.#last;
  }

  /** Appends a round to metrics.jsonl. It is for people: a failed write is logged, never thrown. */
  appendMetrics(m: RoundMetrics): void {
    try {
      this.#metrics.append(m);
    } catch (err) {
      this.#o.log.warn({ err, file: this.#metrics.file }, 'could not append to metrics.jsonl');
    }
  }
}
