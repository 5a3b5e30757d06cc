// ε of planned rounds, for the submit-time budget check and the local-process job, from
// @tensorguard/dp: the same accountants (and the same events) as the coordinator's, whose main
// entry is pure TypeScript (no libtensorflow), so the API server can load it cheaply.
import {
  DEFAULT_RDP_ORDERS,
  INTEGER_RDP_ORDERS,
  RdpAccountant,
  computeEpsilon,
  epsilonFromRdp,
  gaussianEvent,
  poissonSampledEvent,
  type AccountantKind,
} from '@tensorguard/dp';

export interface RdpModule {
  /** The RDP orders the accountant evaluates (dp_accounting's defaults). */
  RDP_ORDERS: number[];
  RdpAccountant: typeof RdpAccountant;
}

/** The RDP accountant and its orders (kept async for callers written against a lazy load). */
export function loadRdp(): Promise<RdpModule> {
  return Promise.resolve({ RDP_ORDERS: [...DEFAULT_RDP_ORDERS], RdpAccountant });
}

export interface PlanParameters {
  /** q: Poisson sampling rate per round. */
  samplingRate: number;
  /**
   * σ: the noise multiplier each round is accounted at (the configured one, which the
   * coordinator records when t contributors survive; more survivors only add noise).
   */
  noiseMultiplier: number;
  delta: number;
  rounds: number;
  /** Default 'rdp'. */
  accountant?: AccountantKind;
}

/**
 * ε after each of rounds 1..rounds (index r-1), composing the same Poisson-subsampled Gaussian
 * every round. RDP: one curve, rescaled per round. PLD: one composition per round (slow for many
 * rounds; use `plannedEpsilon` when only the final value is needed).
 */
export async function epsilonSchedule(p: PlanParameters): Promise<number[]> {
  if (p.rounds < 1) return [];
  if (p.noiseMultiplier === 0) return Array.from({ length: p.rounds }, () => Infinity);
  if ((p.accountant ?? 'rdp') === 'pld') {
    return Array.from({ length: p.rounds }, (_, i) => plannedEpsilonSync({ ...p, rounds: i + 1 }));
  }
  // The integer mechanism's rigorous bound equals the Gaussian's at integer orders (docs/privacy.md).
  const curve = new RdpAccountant({ orders: INTEGER_RDP_ORDERS }).rdpOf(
    poissonSampledEvent(p.samplingRate, gaussianEvent(p.noiseMultiplier)),
  );
  const out: number[] = [];
  for (let r = 1; r <= p.rounds; r++) {
    out.push(
      epsilonFromRdp(
        INTEGER_RDP_ORDERS,
        curve.map((v) => v * r),
        p.delta,
        'improved',
      ).epsilon,
    );
  }
  return out;
}

function plannedEpsilonSync(p: PlanParameters): number {
  if (p.noiseMultiplier === 0) return Infinity;
  return computeEpsilon({
    samplingRate: p.samplingRate,
    steps: p.rounds,
    delta: p.delta,
    noiseMultiplier: p.noiseMultiplier,
    accountant: p.accountant ?? 'rdp',
    ...((p.accountant ?? 'rdp') === 'rdp' ? { orders: INTEGER_RDP_ORDERS } : {}),
  });
}

/** ε after all `rounds` (the budget check), with the chosen accountant. */
export async function plannedEpsilon(p: PlanParameters): Promise<number> {
  return plannedEpsilonSync(p);
}

/**
 * A job document (resolved: σ in place of a target ε) whose rounds are released without noise,
 * σ = 0: its ε is infinite, whatever a log line or a default says.
 */
export function isNonPrivate(spec: Record<string, unknown>): boolean {
  const p = spec.privacy;
  return typeof p === 'object' && p !== null && (p as Record<string, unknown>).noiseMultiplier === 0;
}
