// The job-level privacy ledger for data-parallel training: one RDP ledger per data shard.
//
// Every record lives on exactly one worker's shard, and a round touches each shard's records only
// through that shard's Poisson sample, so shards compose in parallel: the job is (ε, δ)-DP with
// ε = max over shards (parallel composition; McSherry 2009, applied per RDP curve). Each round
// records, per shard, the sampling rate used and the noise actually realized in the released sum
// (after dropouts), never the configured one. The budget check happens before a round is recorded
// (and, by the caller, before the sum is released), so ε never passes the budget.
import { RdpAccountant } from './accountant.js';
import { BudgetExceededError, InvalidArgumentError, InvalidStateError } from './errors.js';
import { type DpEvent, dpEventFromJSON, gaussianEvent, poissonSampledEvent } from './mechanisms.js';
import { type RdpConversion, DEFAULT_RDP_ORDERS, epsilonFromRdp } from './rdp.js';
import { requireCount, requireDelta, requireNonNegative, requirePositive } from './validation.js';

/** One shard's part of a round: a Poisson-sampled Gaussian with the realized noise multiplier. */
export interface GaussianShardRelease {
  shard: string;
  /** Poisson sampling rate q of this shard's records in this round. */
  samplingRate: number;
  /** Realized noise std of the released sum divided by the clip norm (after dropouts). */
  noiseMultiplier: number;
}

/** One shard's part of a round, as any event (e.g. Poisson-sampled distributed discrete Gaussian). */
export interface EventShardRelease {
  shard: string;
  event: DpEvent;
}

export type ShardRelease = GaussianShardRelease | EventShardRelease;

/** A round as the ledger records it. `round` numbers must increase strictly. */
export interface RoundRelease {
  round: number;
  shards: readonly ShardRelease[];
}

/** Options of `new DistributedAccountant(...)`. */
export interface DistributedAccountantOptions {
  /** ε budget of the job (nats, > 0). `checkNextRound` refuses rounds that would exceed it. */
  epsilonBudget: number;
  /** δ in (0, 1) at which ε is reported and checked. */
  delta: number;
  /** RDP orders; default DEFAULT_RDP_ORDERS. */
  orders?: readonly number[];
  /** Conversion to (ε, δ); default 'improved'. */
  conversion?: RdpConversion;
}

/** JSON form of a DistributedAccountant; `shards` holds each shard's RDP curve exactly. */
export interface DistributedAccountantState {
  type: 'distributed-rdp';
  version: 1;
  epsilonBudget: number;
  delta: number;
  conversion: RdpConversion;
  orders: number[];
  lastRound: number | null;
  shards: Record<string, (number | 'Infinity')[]>;
  rounds: { round: number; shards: { shard: string; event: DpEvent }[] }[];
}

/**
 * The realized noise multiplier of a sum to which `survivors` workers each added a noise share
 * sized so that `threshold` shares carry `targetNoiseMultiplier` (share std = σ·C/√t): the sum
 * has std σ·C·√(s/t). Fewer survivors mean less noise and more ε. Throws InvalidArgumentError.
 */
export function realizedNoiseMultiplier(
  targetNoiseMultiplier: number,
  survivors: number,
  threshold: number,
): number {
  requireNonNegative('targetNoiseMultiplier', targetNoiseMultiplier);
  requireCount('survivors', survivors, 0);
  requireCount('threshold', threshold, 1);
  return targetNoiseMultiplier * Math.sqrt(survivors / threshold);
}

function shardEvent(release: ShardRelease): DpEvent {
  if ('event' in release) return release.event;
  return poissonSampledEvent(release.samplingRate, gaussianEvent(release.noiseMultiplier));
}

/**
 * Per-shard RDP ledger with a job-level budget. ε of the job = max over shards. Rounds are
 * recorded atomically: `recordRound` first checks the budget and throws BudgetExceededError
 * (recording nothing) if the round would take any shard past it.
 */
export class DistributedAccountant {
  readonly epsilonBudget: number;
  readonly delta: number;
  readonly conversion: RdpConversion;
  readonly orders: readonly number[];
  private readonly curves = new Map<string, Float64Array>();
  private readonly rounds: { round: number; shards: { shard: string; event: DpEvent }[] }[] = [];
  private last: number | null = null;
  // One RDP curve per distinct event (rounds repeat the same q and σ).
  private readonly curveCache = new Map<string, number[]>();
  private readonly rdp: RdpAccountant;

  constructor(options: DistributedAccountantOptions) {
    requirePositive('epsilonBudget', options.epsilonBudget);
    requireDelta('delta', options.delta);
    this.epsilonBudget = options.epsilonBudget;
    this.delta = options.delta;
    this.conversion = options.conversion ?? 'improved';
    if (this.conversion !== 'improved' && this.conversion !== 'classic') {
      throw new InvalidArgumentError(
        'conversion',
        `conversion must be 'improved' or 'classic', got ${String(this.conversion)}`,
      );
    }
    this.rdp = new RdpAccountant({ orders: options.orders ?? DEFAULT_RDP_ORDERS });
    this.orders = this.rdp.orders;
  }

  /** The number of the last recorded round, or null before the first. */
  get lastRound(): number | null {
    return this.last;
  }

  /** Shard ids that have been touched by at least one round. */
  get shardIds(): string[] {
    return [...this.curves.keys()];
  }

  private curveOf(event: DpEvent): number[] {
    const key = JSON.stringify(event);
    let c = this.curveCache.get(key);
    if (!c) {
      c = this.rdp.rdpOf(event);
      this.curveCache.set(key, c);
    }
    return c;
  }

  private epsilonOfCurve(curve: ArrayLike<number>): number {
    return epsilonFromRdp(this.orders, Array.from(curve), this.delta, this.conversion).epsilon;
  }

  /** ε of one shard so far (0 for a shard never touched). */
  shardEpsilon(shard: string): number {
    const c = this.curves.get(shard);
    return c ? this.epsilonOfCurve(c) : 0;
  }

  /** ε of the job so far: the maximum over shards (0 before the first round). */
  epsilon(): number {
    let eps = 0;
    for (const c of this.curves.values()) eps = Math.max(eps, this.epsilonOfCurve(c));
    return eps;
  }

  private validate(next: RoundRelease): { shard: string; event: DpEvent }[] {
    requireCount('round', next.round, 0);
    if (this.last !== null && next.round <= this.last) {
      throw new InvalidArgumentError(
        'round',
        `round ${next.round} is not after the last recorded round ${this.last}; each round is recorded once`,
      );
    }
    const seen = new Set<string>();
    return next.shards.map((s) => {
      if (typeof s.shard !== 'string' || s.shard === '') {
        throw new InvalidArgumentError('shard', 'every shard release needs a non-empty shard id');
      }
      if (seen.has(s.shard)) {
        throw new InvalidArgumentError('shard', `shard "${s.shard}" appears twice in round ${next.round}`);
      }
      seen.add(s.shard);
      const event = shardEvent(s);
      this.curveOf(event); // throws UnsupportedEventError early
      return { shard: s.shard, event };
    });
  }

  /** ε of the job if `next` were recorded, and the shard attaining it. Records nothing. */
  epsilonAfter(next: RoundRelease): { epsilon: number; shard: string | undefined } {
    const entries = this.validate(next);
    const touched = new Map<string, number>();
    for (const { shard, event } of entries) {
      const base = this.curves.get(shard);
      const add = this.curveOf(event);
      touched.set(shard, this.epsilonOfCurve(add.map((r, i) => r + (base ? base[i]! : 0))));
    }
    let worst = 0;
    let worstShard: string | undefined;
    for (const [shard, c] of this.curves) {
      const e = touched.get(shard) ?? this.epsilonOfCurve(c);
      if (e > worst || worstShard === undefined) [worst, worstShard] = [e, shard];
    }
    for (const [shard, e] of touched) {
      if (!this.curves.has(shard) && (e > worst || worstShard === undefined))
        [worst, worstShard] = [e, shard];
    }
    return { epsilon: worst, shard: worstShard };
  }

  /** Whether recording `next` would take ε past the budget. */
  wouldExceed(next: RoundRelease): boolean {
    return this.epsilonAfter(next).epsilon > this.epsilonBudget;
  }

  /**
   * Throws BudgetExceededError (with the ε the round would reach, the budget, δ, the round and the
   * shard) if recording `next` would take ε past the budget; call it before releasing the sum.
   */
  checkNextRound(next: RoundRelease): void {
    const { epsilon, shard } = this.epsilonAfter(next);
    if (epsilon > this.epsilonBudget) {
      throw new BudgetExceededError({
        epsilon,
        budget: this.epsilonBudget,
        delta: this.delta,
        round: next.round,
        shard,
      });
    }
  }

  /**
   * Records `next` after checking the budget (BudgetExceededError, nothing recorded). Also throws
   * InvalidArgumentError for a round number not after the last, a duplicate or empty shard id,
   * and UnsupportedEventError for an event the RDP accountant cannot compose.
   */
  recordRound(next: RoundRelease): void {
    this.checkNextRound(next);
    const entries = this.validate(next);
    for (const { shard, event } of entries) {
      const add = this.curveOf(event);
      let c = this.curves.get(shard);
      if (!c) {
        c = new Float64Array(this.orders.length);
        this.curves.set(shard, c);
      }
      for (let i = 0; i < add.length; i++) c[i]! += add[i]!;
    }
    this.rounds.push({ round: next.round, shards: entries });
    this.last = next.round;
  }

  /** The recorded rounds, oldest first (events as recorded). */
  history(): readonly { round: number; shards: readonly { shard: string; event: DpEvent }[] }[] {
    return this.rounds;
  }

  toJSON(): DistributedAccountantState {
    const shards: Record<string, (number | 'Infinity')[]> = {};
    for (const [id, c] of this.curves) shards[id] = Array.from(c, (r) => (r === Infinity ? 'Infinity' : r));
    return {
      type: 'distributed-rdp',
      version: 1,
      epsilonBudget: this.epsilonBudget,
      delta: this.delta,
      conversion: this.conversion,
      orders: [...this.orders],
      lastRound: this.last,
      shards,
      rounds: this.rounds.map((r) => ({ round: r.round, shards: r.shards.map((s) => ({ ...s })) })),
    };
  }

  /**
   * Rebuilds a ledger from `toJSON()` output: the stored curves are taken as they are (bit for
   * bit), the rounds validated. Throws InvalidStateError naming the bad field.
   */
  static fromJSON(value: unknown): DistributedAccountant {
    const v = value as Partial<DistributedAccountantState> | null;
    if (!v || v.type !== 'distributed-rdp' || v.version !== 1) {
      throw new InvalidStateError(
        'not a DistributedAccountant state (expected type "distributed-rdp", version 1)',
      );
    }
    let acc: DistributedAccountant;
    try {
      acc = new DistributedAccountant({
        epsilonBudget: v.epsilonBudget as number,
        delta: v.delta as number,
        conversion: v.conversion as RdpConversion,
        orders: v.orders as number[],
      });
    } catch (err) {
      throw new InvalidStateError(`distributed accountant settings: ${(err as Error).message}`, {
        cause: err,
      });
    }
    if (v.lastRound !== null && !(typeof v.lastRound === 'number' && Number.isSafeInteger(v.lastRound))) {
      throw new InvalidStateError(
        `lastRound: expected an integer or null, got ${JSON.stringify(v.lastRound)}`,
      );
    }
    acc.last = v.lastRound ?? null;
    for (const [id, curve] of Object.entries(v.shards ?? {})) {
      if (!Array.isArray(curve) || curve.length !== acc.orders.length) {
        throw new InvalidStateError(`shards.${id}: expected ${acc.orders.length} RDP values`);
      }
      acc.curves.set(
        id,
        Float64Array.from(curve, (r, i) => {
          const x = r === 'Infinity' ? Infinity : r;
          if (typeof x !== 'number' || Number.isNaN(x) || x < 0) {
            throw new InvalidStateError(`shards.${id}[${i}]: expected a number >= 0 or "Infinity"`);
          }
          return x;
        }),
      );
    }
    if (!Array.isArray(v.rounds)) throw new InvalidStateError('rounds: expected an array');
    v.rounds.forEach((r, i) => {
      if (!Array.isArray(r.shards)) throw new InvalidStateError(`rounds[${i}].shards: expected an array`);
      acc.rounds.push({
        round: r.round,
        shards: r.shards.map((s, j) => ({
          shard: String(s.shard),
          event: dpEventFromJSON(s.event, `rounds[${i}].shards[${j}].event`),
        })),
      });
    });
    return acc;
  }
}
