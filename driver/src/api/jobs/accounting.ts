// ε of planned rounds, for the submit-time budget check and the local-process job, from
// @tensorguard/dp: the same accountants (and the same events) as the coordinator's, whose main
// entry is pure TypeScript (no libtensorflow), so the API server can load it cheaply.
import {
  DEFAULT_RDP_ORDERS,
  RdpAccountant,
  computeEpsilon,
  epsilonFromRdp,
  rdpPoissonSubsampledGaussianSymmetricBound,
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
  /**
   * Default 'rdp'. Either way the planned ε is the integer mechanism's rigorous RDP bound, the
   * figure the coordinator budgets with under both accountants (under 'pld' the Gaussian's PLD is
   * a labelled reference only; docs/privacy.md).
   */
  accountant?: AccountantKind;
  /**
   * Instead of the rigorous figure, the continuous Gaussian's PLD ε (dp's PldAccountant), a
   * labelled non-rigorous reference for 'pld' jobs' messages, never a budget (seconds of CPU).
   */
  continuousReference?: boolean;
}

/**
 * ε after each of rounds 1..rounds (index r-1), composing the same round every time: one rigorous
 * RDP curve of the integer mechanism (rdpPoissonSubsampledGaussianSymmetricBound), rescaled per round.
 */
export async function epsilonSchedule(p: PlanParameters): Promise<number[]> {
  if (p.rounds < 1) return [];
  if (p.noiseMultiplier === 0) return Array.from({ length: p.rounds }, () => Infinity);
  const curve = rdpPoissonSubsampledGaussianSymmetricBound(
    p.samplingRate,
    p.noiseMultiplier,
    DEFAULT_RDP_ORDERS,
  );
  const out: number[] = [];
  for (let r = 1; r <= p.rounds; r++) {
    out.push(
      epsilonFromRdp(
        DEFAULT_RDP_ORDERS,
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
  if (p.continuousReference) {
    return computeEpsilon({
      samplingRate: p.samplingRate,
      steps: p.rounds,
      delta: p.delta,
      noiseMultiplier: p.noiseMultiplier,
      accountant: 'pld',
    });
  }
  return computeEpsilon({
    samplingRate: p.samplingRate,
    steps: p.rounds,
    delta: p.delta,
    noiseMultiplier: p.noiseMultiplier,
    mechanism: 'integer',
  });
}

/**
 * ε after all `rounds` (the budget check): the integer mechanism's rigorous bound, whatever the
 * accountant; with `continuousReference`, the Gaussian's PLD instead (a reference only).
 */
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
