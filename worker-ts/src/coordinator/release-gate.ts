// The release gate: policy, not mechanism. It owns what decides whether a round's noisy sum may be
// released — the write-ahead privacy ledger (ledger.ts), the per-shard accountant (privacy.ts) and
// privacy.epsilonBudget — and the privacy report written from them. secure-agg's AggregatorServer
// asks it (through the coordinator) once a round's inputs are in and before anything reveals the
// sum; admit() either refuses, having written nothing, or appends the round to the ledger (fsync)
// and the accountant, in that order.
import path from 'node:path';
import {
  distributedDiscreteGaussianEvent,
  nonPrivateEvent,
  poissonSampledEvent,
  realizedNoiseMultiplier,
  type DpEvent,
} from '@tensorguard/dp';
import { writeFileAtomic } from '../checkpoint/atomic.js';
import type { RunConfig } from '../config.js';
import type { Logger } from '../logger.js';
import { jobFingerprint, PrivacyLedger, type LedgerEntry } from './ledger.js';
import { checkDeltaAgainstRecords, integerMechanismEpsilon, JobAccountant } from './privacy.js';

export const LEDGER_FILE = 'privacy-ledger.jsonl';
export const PRIVACY_REPORT_FILE = 'privacy-report.json';

/** A round as the release point sees it: what its ledger entry and integer event are made of. */
export interface ReleaseRequest {
  round: number;
  /** Shard (worker index) of every survivor whose input is in the sum. */
  survivors: readonly number[];
  /** Each worker's noise share std, in integer units (announcement.ts). */
  shareStd: number;
  /** Fixed-point scale of the round's encoding. */
  scale: number;
}

export interface ReleaseGateOptions {
  config: RunConfig;
  /** Length of the released vector (the trainable parameters). */
  dimension: number;
  log: Logger;
}

export class ReleaseGate {
  readonly #cfg: RunConfig;
  readonly #d: number;
  readonly #log: Logger;
  readonly #ledger: PrivacyLedger;
  readonly #accountant: JobAccountant;
  readonly #entries: LedgerEntry[] = [];
  #refusal: string | undefined;
  /** δ has been checked against the job's records (every shard's size known). */
  #deltaChecked = false;

  constructor(o: ReleaseGateOptions) {
    const cfg = o.config;
    this.#cfg = cfg;
    this.#d = o.dimension;
    this.#log = o.log;
    // A torn ledger line is charged as the worst case the config allows: every shard, the least
    // noise a release can carry (quorum survivors).
    this.#ledger = new PrivacyLedger(
      path.join(cfg.checkpoint.dir, LEDGER_FILE),
      (round) => ({
        round,
        samplingRate: cfg.privacy.samplingRate,
        noiseMultiplier: realizedNoiseMultiplier(
          cfg.privacy.noiseMultiplier,
          cfg.secureAggregation.quorum - cfg.privacy.colluders,
          cfg.secureAggregation.quorum - cfg.privacy.colluders,
        ),
        survivors: cfg.secureAggregation.quorum,
        shards: Array.from({ length: cfg.workers.count }, (_, i) => i),
        quorum: cfg.secureAggregation.quorum,
        colluders: cfg.privacy.colluders,
        configuredNoiseMultiplier: cfg.privacy.noiseMultiplier,
        time: new Date().toISOString(),
      }),
      0,
      jobFingerprint(cfg as unknown as Parameters<typeof jobFingerprint>[0]),
    );
    this.#accountant = new JobAccountant({
      kind: cfg.privacy.accountant,
      delta: cfg.privacy.delta,
      shardCount: cfg.workers.count,
    });
  }

  get ledgerFile(): string {
    return this.#ledger.file;
  }
  get delta(): number {
    return this.#cfg.privacy.delta;
  }
  get epsilon(): number {
    return this.#accountant.epsilon();
  }
  /** Rounds counted so far (released, or appended to the ledger and maybe released). */
  get releasedRounds(): number {
    return this.#accountant.roundCount;
  }
  /** This run's ledger entries, the replayed ones first. */
  get entries(): readonly LedgerEntry[] {
    return this.#entries;
  }
  /** Why a release was refused (the budget), once one was; the job stops then. */
  get refusal(): string | undefined {
    return this.#refusal;
  }

  /**
   * Replays the ledger into the accountant at resume, merged with the events of the checkpoint the
   * model resumed from (`checkpointRound`, 0 without one), deduplicated by round number: a round
   * released after the last checkpoint is counted and none is counted twice. A torn last line is
   * repaired to its worst-case entry first. Returns the last round counted (0 when none). Throws
   * CheckpointError for a ledger of another partition of the data or a damaged line.
   */
  replay(checkpointRound: number, checkpointEvents: readonly LedgerEntry[]): number {
    if (this.#accountant.roundCount > 0 || this.#entries.length > 0)
      throw new Error('release gate: replay() runs once, before any release');
    this.#ledger.checkFingerprint();
    this.#ledger.afterRound = checkpointRound;
    this.#ledger.repair();
    this.#entries.push(...this.#ledger.read());
    const events: LedgerEntry[] = [...this.#entries];
    for (const e of checkpointEvents) if (!events.some((x) => x.round === e.round)) events.push(e);
    events.sort((a, b) => a.round - b.round);
    for (const e of events) this.#accountant.record(e);
    if (events.length > 0) {
      this.#log.info(
        { releasedRounds: this.#accountant.roundCount, epsilon: this.epsilon },
        'privacy ledger replayed',
      );
    }
    return Math.max(0, ...events.map((e) => e.round));
  }

  /**
   * δ ≤ 1/N, with N the job's training records (the workers' declared shard sizes), checked once,
   * when every worker has reported its own (normally before round 1): the driver could only check
   * it where it knew N in advance. Throws DeltaAboveInverseNError unless
   * privacy.allowDeltaAboveInverseN; later calls do nothing.
   */
  checkDelta(records: number): void {
    if (this.#deltaChecked) return;
    this.#deltaChecked = true;
    checkDeltaAgainstRecords(this.delta, records, this.#cfg.privacy.allowDeltaAboveInverseN);
  }

  /**
   * Before a round opens: the reason to stop when even the worst case it may release (t survivors
   * from every shard, so the realised multiplier is σ) would pass privacy.epsilonBudget; undefined
   * when it may open. The release point checks the actual round again (admit).
   */
  checkNextRound(): string | undefined {
    const cfg = this.#cfg;
    const budget = cfg.privacy.epsilonBudget;
    if (budget === null) return undefined;
    const next = this.#accountant.epsilonAfter({
      samplingRate: cfg.privacy.samplingRate,
      noiseMultiplier: cfg.privacy.noiseMultiplier,
      survivors: cfg.secureAggregation.quorum,
    });
    if (!(next > budget)) return undefined;
    this.#log.warn({ epsilon: this.epsilon, next }, 'stopping before the privacy budget would be exceeded');
    return `privacy budget: another round would reach ε = ${next.toFixed(3)} > epsilonBudget ${budget}`;
  }

  /**
   * The release point's bookkeeping: checks the round as it will be released (the shards of its
   * survivors) against the budget, then appends it to the ledger (fsync) and the accountant.
   * Returns false, writes nothing and records the refusal when releasing it would pass
   * privacy.epsilonBudget; nothing has been released then (masked inputs without unmask shares,
   * or ciphertexts the key holder was never asked to decrypt, are useless). Throws when the ledger
   * append fails (the round must not be released then either).
   */
  admit(req: ReleaseRequest): boolean {
    const cfg = this.#cfg;
    const r = req.round;
    const t = cfg.secureAggregation.quorum;
    const survivors = req.survivors.length;
    // Per-shard accounting needs shards that do not depend on other records (data/shard.ts):
    // under 'contiguous' a removed record shifts others across range boundaries, so every round
    // is charged to every shard there.
    const shards =
      cfg.dataset.sharding === 'contiguous'
        ? Array.from({ length: cfg.workers.count }, (_, i) => i)
        : [...req.survivors];
    // Only honest noise counts: up to `colluders` survivors may subtract their own shares, so the
    // release holds survivors − c shares, each sized for t − c (announcement.ts).
    const c = cfg.privacy.colluders;
    const realised = realizedNoiseMultiplier(cfg.privacy.noiseMultiplier, survivors - c, t - c);
    const integerEvent: DpEvent =
      req.shareStd >= 0.5
        ? poissonSampledEvent(
            cfg.privacy.samplingRate,
            distributedDiscreteGaussianEvent({
              l2ClipNorm: cfg.privacy.clipNorm,
              granularity: 1 / req.scale,
              dimension: this.#d,
              localStddev: req.shareStd,
              contributors: survivors - c,
            }),
          )
        : nonPrivateEvent();
    const budget = cfg.privacy.epsilonBudget;
    if (budget !== null) {
      // The release is checked on the integer mechanism it would actually be (a proof).
      const after = this.#accountant.epsilonAfter({
        samplingRate: cfg.privacy.samplingRate,
        noiseMultiplier: realised,
        survivors,
        shards,
        integerEvent,
      });
      if (after > budget) {
        this.#refusal = `privacy budget: releasing round ${r} would reach ε = ${after.toFixed(3)} > epsilonBudget ${budget}`;
        this.#log.warn({ round: r, epsilon: this.epsilon, next: after }, 'round refused before release');
        return false;
      }
    }
    const entry: LedgerEntry = {
      round: r,
      samplingRate: cfg.privacy.samplingRate,
      noiseMultiplier: realised,
      survivors,
      shards,
      quorum: t,
      colluders: c,
      configuredNoiseMultiplier: cfg.privacy.noiseMultiplier,
      integerEvent,
      time: new Date().toISOString(),
    };
    this.#ledger.append(entry);
    this.#entries.push(entry);
    this.#accountant.record(entry);
    return true;
  }

  /** Writes privacy-report.json beside the ledger (atomically) and returns its path. */
  writeReport(stopReason: string): string {
    const cfg = this.#cfg;
    const jsonEpsilon = (e: number | null) => (e === null || Number.isFinite(e) ? e : 'Infinity');
    const file = path.join(cfg.checkpoint.dir, PRIVACY_REPORT_FILE);
    const epsilon = this.epsilon;
    writeFileAtomic(
      file,
      JSON.stringify(
        {
          job: cfg.name,
          // JSON has no Infinity: a job without noise says so, never null or 0.
          epsilon: Number.isFinite(epsilon) ? epsilon : 'Infinity',
          nonPrivate: !Number.isFinite(epsilon),
          delta: this.delta,
          epsilonBudget: cfg.privacy.epsilonBudget,
          accountant: this.#accountant.describe(),
          epsilonRdp: this.#accountant.rdpEpsilon(),
          epsilonIntegerMechanism: integerMechanismEpsilon(this.#entries, this.delta, cfg.workers.count),
          integerMechanism:
            "each worker adds exact discrete Gaussian noise N_Z(0, (σΔs)²/(t − c)) (dp's CSPRNG sampler); epsilonIntegerMechanism is dp's RDP bound for the Poisson-subsampled distributed discrete Gaussian over the survivors − c honest shares (Kairouz, Liu, Steinke 2021 per order; tight subsampling for symmetric shift pairs, docs/privacy.md): a proof for the integers, and the job's epsilon with either accountant",
          // pld only: the continuous Gaussian's PLD, labelled as the non-rigorous reference it is.
          ...(this.#accountant.kind === 'pld'
            ? { epsilonContinuousReference: jsonEpsilon(this.#accountant.continuousReferenceEpsilon()) }
            : {}),
          privacyUnit: 'one training record',
          samplingRate: cfg.privacy.samplingRate,
          clipNorm: cfg.privacy.clipNorm,
          noiseMultiplier: cfg.privacy.noiseMultiplier,
          quorum: cfg.secureAggregation.quorum,
          colluders: cfg.privacy.colluders,
          noiseRule:
            'each worker adds variance σ²Δ²/(t − c); a round with s survivors is accounted at σ·√((s − c)/(t − c)), the noise of its honest survivors alone',
          threatModel: `the aggregator may be curious; up to ${cfg.privacy.colluders} worker(s) may collude with it and remove their own noise shares (privacy.colluders); ε counts only the honest workers' noise`,
          releasedRounds: this.#entries,
          stopReason,
        },
        null,
        2,
      ) + '\n',
    );
    return file;
  }
}
