// Calibration: the noise multiplier that meets a target ε, and how many steps a budget allows.
import { PldAccountant, RdpAccountant } from './accountant.js';
import { CalibrationError } from './errors.js';
import { gaussianEvent, poissonSampledEvent } from './mechanisms.js';
import {
  type RdpConversion,
  epsilonFromRdp,
  rdpPoissonSubsampledGaussian,
  rdpPoissonSubsampledGaussianSymmetricBound,
  DEFAULT_RDP_ORDERS,
} from './rdp.js';
import { requireCount, requireDelta, requirePositive, requireProbability } from './validation.js';

/** Which accountant a calibration uses. */
export type AccountantKind = 'rdp' | 'pld';

/** The setting shared by the calibration functions. */
export interface TrainingPrivacySetting {
  /** Poisson sampling rate q in (0, 1]. */
  samplingRate: number;
  /** Number of steps (integer >= 1). */
  steps: number;
  /** Target δ in (0, 1). */
  delta: number;
  /** Default 'rdp'. */
  accountant?: AccountantKind;
  /** RDP conversion to (ε, δ); default 'improved'. Ignored by PLD. */
  conversion?: RdpConversion;
  /**
   * RDP orders; default DEFAULT_RDP_ORDERS. Ignored by PLD.
   */
  orders?: readonly number[];
  /**
   * What is accounted; default 'gaussian' (the Poisson-subsampled Gaussian, with `accountant`).
   * 'integer': the rigorous RDP bound of the integer mechanism TensorGuard runs (distributed
   * discrete Gaussian over randomized-rounded integers, at the shares' noise where KLS21's τ
   * vanishes): rdpPoissonSubsampledGaussianSymmetricBound at `orders`, equal to the Gaussian's
   * at integer orders and a proven upper bound between them (docs/privacy.md). Always RDP:
   * `accountant` is then ignored, since no PLD of the integer mechanism is proven.
   */
  mechanism?: 'gaussian' | 'integer';
  /** PLD grid step, nats; default 1e-4. */
  discretization?: number;
}

/**
 * ε after `steps` Poisson-sampled Gaussian steps (rate q, noise multiplier σ) at δ, with the RDP
 * (default) or PLD accountant, or the integer mechanism's rigorous RDP bound (`mechanism`). Throws InvalidArgumentError for out-of-range inputs.
 */
export function computeEpsilon(setting: TrainingPrivacySetting & { noiseMultiplier: number }): number {
  requireProbability('samplingRate', setting.samplingRate);
  requireCount('steps', setting.steps, 0);
  requireDelta('delta', setting.delta);
  requirePositive('noiseMultiplier', setting.noiseMultiplier);
  if (setting.mechanism === 'integer') {
    const orders = setting.orders ?? DEFAULT_RDP_ORDERS;
    const curve = rdpPoissonSubsampledGaussianSymmetricBound(
      setting.samplingRate,
      setting.noiseMultiplier,
      orders,
    );
    return epsilonFromRdp(
      orders,
      curve.map((r) => r * setting.steps),
      setting.delta,
      setting.conversion ?? 'improved',
    ).epsilon;
  }
  const event = poissonSampledEvent(setting.samplingRate, gaussianEvent(setting.noiseMultiplier));
  if ((setting.accountant ?? 'rdp') === 'pld') {
    const pld = new PldAccountant(
      setting.discretization === undefined ? {} : { discretization: setting.discretization },
    );
    return pld.compose(event, setting.steps).epsilon(setting.delta);
  }
  return new RdpAccountant(setting.orders ? { orders: setting.orders } : {})
    .compose(event, setting.steps)
    .epsilon(setting.delta, setting.conversion ?? 'improved');
}

/**
 * The smallest noise multiplier σ (to relative precision `tolerance`, default 1e-4, always
 * rounded up so that ε(σ) <= targetEpsilon) for which training with `setting` is
 * (targetEpsilon, δ)-DP. Searches σ in [1e-3, 1e4] by bisection (ε decreases with σ). Throws
 * InvalidArgumentError for bad inputs and CalibrationError when even σ = 1e4 does not reach the
 * target.
 */
export function calibrateNoiseMultiplier(
  setting: TrainingPrivacySetting & { targetEpsilon: number; tolerance?: number },
): number {
  requirePositive('targetEpsilon', setting.targetEpsilon);
  requireCount('steps', setting.steps, 1);
  const tolerance = setting.tolerance ?? 1e-4;
  requirePositive('tolerance', tolerance);
  const eps = (sigma: number): number => computeEpsilon({ ...setting, noiseMultiplier: sigma });
  let hi = 1;
  while (eps(hi) > setting.targetEpsilon) {
    hi *= 2;
    if (hi > 1e4) {
      throw new CalibrationError(
        `no noise multiplier up to 1e4 gives ε <= ${setting.targetEpsilon} at δ=${setting.delta} ` +
          `(q=${setting.samplingRate}, steps=${setting.steps}); lower the steps or the sampling rate`,
      );
    }
  }
  let lo = hi / 2;
  if (eps(lo) <= setting.targetEpsilon) {
    // Already met at hi/2: walk down until it is not.
    while (lo > 1e-3 && eps(lo) <= setting.targetEpsilon) {
      hi = lo;
      lo /= 2;
    }
    if (lo <= 1e-3) return hi;
  }
  while ((hi - lo) / hi > tolerance) {
    const mid = (lo + hi) / 2;
    if (eps(mid) <= setting.targetEpsilon) hi = mid;
    else lo = mid;
  }
  return hi;
}

/**
 * The largest number of steps (rate q, noise multiplier σ) whose RDP ε at δ stays within
 * `epsilonBudget`: 0 if not even one fits, at most `maxSteps` (default 1e9). One RDP curve is
 * computed; each candidate step count only rescales it. Throws InvalidArgumentError.
 */
export function maxStepsForBudget(options: {
  epsilonBudget: number;
  delta: number;
  samplingRate: number;
  noiseMultiplier: number;
  conversion?: RdpConversion;
  maxSteps?: number;
}): number {
  requirePositive('epsilonBudget', options.epsilonBudget);
  requireDelta('delta', options.delta);
  requireProbability('samplingRate', options.samplingRate);
  requirePositive('noiseMultiplier', options.noiseMultiplier);
  const maxSteps = options.maxSteps ?? 1e9;
  requireCount('maxSteps', maxSteps, 1);
  const orders = DEFAULT_RDP_ORDERS;
  const curve = rdpPoissonSubsampledGaussian(options.samplingRate, options.noiseMultiplier, orders);
  const fits = (t: number): boolean =>
    epsilonFromRdp(
      orders,
      curve.map((r) => r * t),
      options.delta,
      options.conversion ?? 'improved',
    ).epsilon <= options.epsilonBudget;
  if (!fits(1)) return 0;
  if (fits(maxSteps)) return maxSteps;
  let lo = 1;
  let hi = maxSteps;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}
