// The coordinator's privacy accounting, on @tensorguard/dp's accountants. A record lives on one
// worker's shard and a round touches it only through that shard's Poisson sample, so every shard
// has its own ledger and the job's ε is the worst shard's (parallel composition; docs/privacy.md).
//
//   - 'rdp' (default): dp's DistributedAccountant (one RDP curve per shard, dp_accounting's
//     orders and improved conversion);
//   - 'pld': the same rigorous RDP ledger for ε and the budget; the continuous Gaussian's PLD
//     (dp's PldAccountant per shard, one composition per distinct history, cached) is kept beside
//     it as a labelled, non-rigorous reference (`continuousReferenceEpsilon`), never a budget.
//
// The event of a released round is the mechanism the workers actually run: the Poisson-subsampled
// sum of the honest survivors' exact discrete Gaussian shares over randomized-rounded integers
// (dp's distributedDiscreteGaussianEvent, its `integerEvent`), accounted with the KLS21 per-order
// bound and the tight subsampling bound for symmetric shift pairs: a proof for the integers that
// equals the Gaussian accounting at the realised noise multiplier σ·√((s−c)/(t−c)) up to the
// integer orders it uses (docs/privacy.md, "A rigorous ε for the integers"). A round recorded
// without its integer event (ledgers of older versions) falls back to that Gaussian event.
// No PLD of the integer mechanism is proven (a discrete Gaussian is not post-processing of a
// continuous one: at small σ its tests are sharper), so under 'pld' the Gaussian's PLD would not
// be a bound for what runs: it is reported as a reference only (docs/privacy.md).
//
// This module only accounts; the policy (refuse a round before it would pass the budget) is in
// the coordinator, which calls `epsilonAfter` before a round opens and again before the sum is
// released.
import {
  DistributedAccountant,
  PldAccountant,
  gaussianEvent,
  nonPrivateEvent,
  poissonSampledEvent,
  type DpEvent,
} from '@tensorguard/dp';

export type AccountantKind = 'rdp' | 'pld';

/** One released round as the accountant sees it. */
export interface RoundEvent {
  round: number;
  /** Poisson sampling rate of every record. */
  samplingRate: number;
  /** Realised noise std of the sum divided by the sensitivity: σ·√(s/t). 0 = no noise. */
  noiseMultiplier: number;
  /** Contributors whose noise shares are in the sum. */
  survivors: number;
  /**
   * Shards (worker indices) whose clipped sums are in the released sum. Absent (ledgers written
   * before per-shard accounting): every shard, which can only over-count.
   */
  shards?: number[];
  /**
   * The integer mechanism as run (Poisson-sampled distributed discrete Gaussian, or non-private
   * when the shares carry no usable noise): what the RDP ledger accounts when present.
   */
  integerEvent?: DpEvent;
}

/** The event the RDP ledger records for a round: the integer mechanism when known. */
function ledgerEvent(e: Pick<RoundEvent, 'samplingRate' | 'noiseMultiplier' | 'integerEvent'>): DpEvent {
  return e.integerEvent ?? roundEvent(e);
}

/** Whether a round released a sum that nothing bounds (no noise, or unusable integer noise). */
function unbounded(e: Pick<RoundEvent, 'noiseMultiplier' | 'integerEvent'>): boolean {
  return e.noiseMultiplier === 0 || e.integerEvent?.kind === 'non-private';
}

/** The event one shard's records go through in a round. */
export function roundEvent(e: Pick<RoundEvent, 'samplingRate' | 'noiseMultiplier'>): DpEvent {
  // No noise: nothing bounds the loss, whatever the sampling (dp composes it as ε = ∞).
  if (e.noiseMultiplier === 0) return nonPrivateEvent();
  return poissonSampledEvent(e.samplingRate, gaussianEvent(e.noiseMultiplier));
}

export interface JobAccountantOptions {
  kind: AccountantKind;
  /** δ at which ε is reported. */
  delta: number;
  /** Shards of the job (workers.count); shard ids are worker indices. */
  shardCount: number;
}

/**
 * Per-shard privacy ledger of a job. Rounds are recorded once each, in increasing round order;
 * recording a round again is a no-op. Throws dp's errors for invalid events.
 */
export class JobAccountant {
  readonly kind: AccountantKind;
  readonly delta: number;
  private readonly shardCount: number;
  private readonly rdp: DistributedAccountant;
  private readonly recorded = new Set<number>();
  /** pld: per shard, distinct event → count. */
  private readonly histories = new Map<string, Map<string, { event: DpEvent; count: number }>>();
  private readonly pldCache = new Map<string, number>();
  /**
   * Shards that took part in a round without noise (σ = 0: tests of exactness only). Their ε is
   * infinite; dp's ledgers refuse such rounds, so they are tracked here.
   */
  private readonly nonPrivate = new Set<string>();

  constructor(o: JobAccountantOptions) {
    this.kind = o.kind;
    this.delta = o.delta;
    this.shardCount = o.shardCount;
    // The budget is the coordinator's policy (checked with epsilonAfter); the ledger itself must
    // be able to replay whatever was released, so it gets no budget of its own.
    this.rdp = new DistributedAccountant({ epsilonBudget: Number.MAX_VALUE, delta: o.delta });
  }

  private shardsOf(e: Pick<RoundEvent, 'shards'>): string[] {
    const ids = e.shards ?? Array.from({ length: this.shardCount }, (_, i) => i);
    return ids.map(String);
  }

  get roundCount(): number {
    return this.recorded.size;
  }

  has(round: number): boolean {
    return this.recorded.has(round);
  }

  /** Adds a released round; returns false (and changes nothing) if it is already recorded. */
  record(e: RoundEvent): boolean {
    if (this.recorded.has(e.round)) return false;
    const event = roundEvent(e);
    const shards = this.shardsOf(e);
    if (unbounded(e)) {
      for (const s of shards) this.nonPrivate.add(s);
      this.recorded.add(e.round);
      return true;
    }
    const rigorous = ledgerEvent(e);
    this.rdp.recordRound({ round: e.round, shards: shards.map((shard) => ({ shard, event: rigorous })) });
    if (this.kind === 'pld') {
      const key = JSON.stringify(event);
      for (const s of shards) {
        let h = this.histories.get(s);
        if (!h) this.histories.set(s, (h = new Map()));
        const cur = h.get(key);
        h.set(key, { event, count: (cur?.count ?? 0) + 1 });
      }
    }
    this.recorded.add(e.round);
    return true;
  }

  private pldEpsilon(h: ReadonlyMap<string, { event: DpEvent; count: number }>): number {
    const sig = JSON.stringify([...h].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, v.count]));
    let eps = this.pldCache.get(sig);
    if (eps === undefined) {
      const acc = new PldAccountant();
      for (const { event, count } of h.values()) acc.compose(event, count);
      eps = acc.epsilon(this.delta);
      this.pldCache.set(sig, eps);
    }
    return eps;
  }

  /**
   * ε of the job so far (0 before the first round): the integer mechanism's rigorous RDP bound,
   * under both accountants.
   */
  epsilon(): number {
    return this.nonPrivate.size > 0 ? Infinity : this.rdp.epsilon();
  }

  /**
   * 'pld' only: the continuous Gaussian's PLD ε at the realised noise multipliers (max over
   * shards), a non-rigorous reference for the integer mechanism; null under 'rdp'.
   */
  continuousReferenceEpsilon(): number | null {
    if (this.kind !== 'pld') return null;
    if (this.nonPrivate.size > 0) return Infinity;
    let eps = 0;
    for (const h of this.histories.values()) eps = Math.max(eps, this.pldEpsilon(h));
    return eps;
  }

  /** ε of the job with the RDP ledger, whatever the configured accountant (for reports). */
  rdpEpsilon(): number {
    return this.nonPrivate.size > 0 ? Infinity : this.rdp.epsilon();
  }

  /** ε the job would have after also recording `e` (not recorded): the budget check. */
  epsilonAfter(e: Omit<RoundEvent, 'round'>): number {
    if (unbounded(e) || this.nonPrivate.size > 0) return Infinity;
    const shards = this.shardsOf(e);
    const round = (this.rdp.lastRound ?? -1) + 1;
    const rigorous = ledgerEvent(e);
    return this.rdp.epsilonAfter({ round, shards: shards.map((shard) => ({ shard, event: rigorous })) })
      .epsilon;
  }

  /** What computes ε, for the privacy report. */
  describe(): string {
    return this.kind === 'pld'
      ? "per-shard RDP (dp DistributedAccountant: dp_accounting's orders, improved conversion) of the integer mechanism as run, as with 'rdp' (a proof for the integers; job ε = max over shards); the per-shard PLD of the Poisson-subsampled Gaussian at the realised noise multiplier (connect-the-dots, grid 1e-4) is epsilonContinuousReference, a non-rigorous reference, never the budget"
      : "per-shard RDP (dp DistributedAccountant: dp_accounting's orders, improved conversion) of the integer mechanism as run: Poisson-subsampled distributed discrete Gaussian over the honest survivors' shares (Kairouz, Liu, Steinke 2021 per order; tight subsampling for symmetric shift pairs, docs/privacy.md), a proof for the integers; job ε = max over shards";
  }

  /** The RDP ledger's exact state (checkpoint manifests). */
  toJSON(): unknown {
    return { kind: this.kind, delta: this.delta, rdp: this.rdp.toJSON() };
  }
}

/**
 * ε (RDP, max over shards) of the integer mechanism the workers actually run, from the ledger's
 * `integerEvent`s: Poisson-subsampled distributed discrete Gaussian with the rounding-inflated
 * sensitivity (Kairouz, Liu, Steinke 2021), with the tight subsampling bound for symmetric shift
 * pairs (docs/privacy.md). A rigorous bound for the integers; with the 'rdp' accountant it is the
 * job's ε. null when some round has no integer event (an older ledger).
 */
export function integerMechanismEpsilon(
  entries: readonly (RoundEvent & { integerEvent?: DpEvent })[],
  delta: number,
  shardCount: number,
): number | null {
  const acc = new DistributedAccountant({ epsilonBudget: Number.MAX_VALUE, delta });
  for (const e of [...entries].sort((a, b) => a.round - b.round)) {
    if (!e.integerEvent) return null;
    if (e.integerEvent.kind === 'non-private') return Infinity;
    const shards = (e.shards ?? Array.from({ length: shardCount }, (_, i) => i)).map(String);
    acc.recordRound({ round: e.round, shards: shards.map((shard) => ({ shard, event: e.integerEvent! })) });
  }
  return acc.epsilon();
}

/**
 * δ against the job's training records N, once N is known at run time (the sum of the workers'
 * shard sizes, which are public: docs/privacy.md). The driver checks the same rule when it knows N
 * before the job (a preset or dataset.trainExamples); for a user's csv or jsonl it does not, so
 * the coordinator checks it before the first round. Throws DeltaAboveInverseNError when
 * δ > 1/N unless `allowed` (privacy.allowDeltaAboveInverseN).
 */
export function checkDeltaAgainstRecords(delta: number, records: number, allowed: boolean): void {
  if (allowed || !(records > 0) || delta <= 1 / records) return;
  throw new DeltaAboveInverseNError(delta, records);
}

/** δ above 1/N for the job's N training records, not explicitly allowed. */
export class DeltaAboveInverseNError extends Error {
  constructor(
    readonly delta: number,
    readonly records: number,
  ) {
    super(
      `privacy.delta ${delta} is above 1/N = ${(1 / records).toPrecision(3)} for N = ${records} training records ` +
        `(the workers' shard sizes): at such a δ a mechanism may publish a record outright; lower privacy.delta ` +
        `(for example to ${(0.1 / records).toPrecision(1)}) or set privacy.allowDeltaAboveInverseN: true`,
    );
    this.name = 'DeltaAboveInverseNError';
  }
}
