// Privacy events: immutable values that describe what was released, which accountants compose
// (the dp_accounting DpEvent model). They are plain frozen JSON-compatible objects, so a ledger can
// store them verbatim; `dpEventFromJSON` validates one read back.
//
// The distributed discrete mechanisms are described in the integer units the workers use after
// scaling by 1/granularity and randomized rounding; their RDP curves are in rdpOfDiscreteEvent.
import { InvalidArgumentError, InvalidStateError } from './errors.js';
import { rdpPoissonSubsampledSymmetricCurve } from './rdp.js';
import { requireCount, requireNonNegative, requirePositive, requireProbability } from './validation.js';

/** The Gaussian mechanism on the whole dataset: noise std = noiseMultiplier × L2 sensitivity. */
export interface GaussianEvent {
  readonly kind: 'gaussian';
  readonly noiseMultiplier: number;
}

/** `event` run on a Poisson sample: each record kept independently with `samplingRate`. */
export interface PoissonSampledEvent {
  readonly kind: 'poisson-sampled';
  readonly samplingRate: number;
  readonly event: DpEvent;
}

/** `event` run on `sampleSize` records drawn uniformly without replacement from `sourceSize`. */
export interface SampledWithoutReplacementEvent {
  readonly kind: 'sampled-without-replacement';
  readonly sourceSize: number;
  readonly sampleSize: number;
  readonly event: DpEvent;
}

/** `event` repeated `count` times (steps of training). */
export interface SelfComposedEvent {
  readonly kind: 'self-composed';
  readonly event: DpEvent;
  readonly count: number;
}

/** Several events, one after the other. */
export interface ComposedEvent {
  readonly kind: 'composed';
  readonly events: readonly DpEvent[];
}

/**
 * Parameters shared by the integer-noise mechanisms under secure aggregation. All norms are in the
 * worker's real units; `granularity` γ is the real value of one integer step (values are divided
 * by γ, then randomly rounded to integers).
 */
export interface DiscreteNoiseParams {
  /** L2 clip norm C of one record's contribution, real units. */
  readonly l2ClipNorm: number;
  /** γ: real value of one integer step (> 0). */
  readonly granularity: number;
  /** Number of coordinates d of the released vector. */
  readonly dimension: number;
  /**
   * Conditional randomized rounding parameter β in [0, 1) (Kairouz, Liu, Steinke 2021, Prop. 22).
   * 0 (default) uses the deterministic bound C/γ + √d, valid however the rounding is arranged;
   * β > 0 is only valid when every record's clipped contribution is rounded on its own with
   * conditional rounding (resampled until its norm is within the bound).
   */
  readonly beta: number;
  /** Std of the integer noise each contributor adds, integer units. */
  readonly localStddev: number;
  /** Contributors whose noise is actually in the released sum (survivors, after dropouts). */
  readonly contributors: number;
}

/**
 * Sum of `contributors` independent discrete Gaussians N_Z(0, localStddev²) added to integer
 * vectors (Kairouz, Liu, Steinke 2021, "The Distributed Discrete Gaussian Mechanism for Federated
 * Learning with Secure Aggregation").
 */
export interface DistributedDiscreteGaussianEvent extends DiscreteNoiseParams {
  readonly kind: 'distributed-discrete-gaussian';
}

/**
 * Sum of `contributors` independent symmetric Skellam noises of variance localStddev² (Agarwal,
 * Kairouz, Liu 2021, "The Skellam Mechanism for Differentially Private Federated Learning").
 */
export interface SkellamEvent extends DiscreteNoiseParams {
  readonly kind: 'skellam';
}

/** Nothing released. */
export interface NoOpEvent {
  readonly kind: 'no-op';
}

/** Something released without privacy: ε = ∞ from here on. */
export interface NonPrivateEvent {
  readonly kind: 'non-private';
}

/** Every event the accountants know. */
export type DpEvent =
  | GaussianEvent
  | PoissonSampledEvent
  | SampledWithoutReplacementEvent
  | SelfComposedEvent
  | ComposedEvent
  | DistributedDiscreteGaussianEvent
  | SkellamEvent
  | NoOpEvent
  | NonPrivateEvent;

/** The `kind` strings, for messages and validation. */
export const EVENT_KINDS: readonly DpEvent['kind'][] = Object.freeze([
  'gaussian',
  'poisson-sampled',
  'sampled-without-replacement',
  'self-composed',
  'composed',
  'distributed-discrete-gaussian',
  'skellam',
  'no-op',
  'non-private',
]);

/**
 * A Gaussian mechanism event. `noiseMultiplier` σ >= 0 is the noise std divided by the L2
 * sensitivity (0 means no privacy). Throws InvalidArgumentError for σ < 0 or non-finite.
 */
export function gaussianEvent(noiseMultiplier: number): GaussianEvent {
  requireNonNegative('noiseMultiplier', noiseMultiplier);
  return Object.freeze({ kind: 'gaussian', noiseMultiplier });
}

/**
 * `event` on a Poisson sample with rate q in [0, 1]. Throws InvalidArgumentError for q outside
 * [0, 1].
 */
export function poissonSampledEvent(samplingRate: number, event: DpEvent): PoissonSampledEvent {
  requireProbability('samplingRate', samplingRate);
  return Object.freeze({ kind: 'poisson-sampled', samplingRate, event: checkEvent(event) });
}

/**
 * `event` on `sampleSize` records drawn without replacement from `sourceSize` (both integers,
 * 0 <= sampleSize <= sourceSize, sourceSize >= 1). Accounted under replace-one adjacency.
 */
export function sampledWithoutReplacementEvent(
  sourceSize: number,
  sampleSize: number,
  event: DpEvent,
): SampledWithoutReplacementEvent {
  requireCount('sourceSize', sourceSize, 1);
  requireCount('sampleSize', sampleSize, 0);
  if (sampleSize > sourceSize) {
    throw new InvalidArgumentError(
      'sampleSize',
      `sampleSize (${sampleSize}) must not exceed sourceSize (${sourceSize})`,
    );
  }
  return Object.freeze({
    kind: 'sampled-without-replacement',
    sourceSize,
    sampleSize,
    event: checkEvent(event),
  });
}

/** `event` repeated `count` >= 0 times (an integer). */
export function selfComposedEvent(event: DpEvent, count: number): SelfComposedEvent {
  requireCount('count', count, 0);
  return Object.freeze({ kind: 'self-composed', event: checkEvent(event), count });
}

/** The events in order. The array is copied and frozen. */
export function composedEvent(events: readonly DpEvent[]): ComposedEvent {
  return Object.freeze({ kind: 'composed', events: Object.freeze(events.map(checkEvent)) });
}

/** Nothing released. */
export function noOpEvent(): NoOpEvent {
  return Object.freeze({ kind: 'no-op' });
}

/** A release without privacy (ε becomes ∞). */
export function nonPrivateEvent(): NonPrivateEvent {
  return Object.freeze({ kind: 'non-private' });
}

function discreteParams(p: Partial<DiscreteNoiseParams>): DiscreteNoiseParams {
  const beta = p.beta ?? 0;
  requirePositive('l2ClipNorm', p.l2ClipNorm ?? NaN);
  requirePositive('granularity', p.granularity ?? NaN);
  requireCount('dimension', p.dimension ?? NaN, 1);
  if (!(beta >= 0 && beta < 1)) {
    throw new InvalidArgumentError('beta', `beta must be in [0, 1), got ${beta}`);
  }
  requireNonNegative('localStddev', p.localStddev ?? NaN);
  requireCount('contributors', p.contributors ?? NaN, 0);
  return {
    l2ClipNorm: p.l2ClipNorm!,
    granularity: p.granularity!,
    dimension: p.dimension!,
    beta,
    localStddev: p.localStddev!,
    contributors: p.contributors!,
  };
}

/**
 * A distributed discrete Gaussian release. Fields as in DiscreteNoiseParams (`beta` defaults to
 * 0). `localStddev` must be >= 1/2 when there are contributors (the KLS21 bound assumes it).
 * Throws InvalidArgumentError naming the field that is out of range.
 */
export function distributedDiscreteGaussianEvent(
  params: Omit<DiscreteNoiseParams, 'beta'> & { beta?: number },
): DistributedDiscreteGaussianEvent {
  const p = discreteParams(params);
  if (p.contributors > 0 && p.localStddev < 0.5) {
    throw new InvalidArgumentError(
      'localStddev',
      `localStddev must be >= 0.5 integer units for the distributed discrete Gaussian bound, got ${p.localStddev}`,
    );
  }
  return Object.freeze({ kind: 'distributed-discrete-gaussian', ...p });
}

/** A distributed Skellam release; fields as in DiscreteNoiseParams (`beta` defaults to 0). */
export function skellamEvent(params: Omit<DiscreteNoiseParams, 'beta'> & { beta?: number }): SkellamEvent {
  return Object.freeze({ kind: 'skellam', ...discreteParams(params) });
}

/**
 * L2 norm bound, in integer units, of a vector of L2 norm `l2Norm` (integer units, i.e. already
 * divided by the granularity) after randomized rounding of each of its `dimension` coordinates
 * (Kairouz, Liu, Steinke 2021, Theorem 1 / Proposition 22):
 *   min( c + √d,  √(c² + d/4 + √(2 ln(1/β)) (c + √d/2)) ),
 * where the second term applies only for β > 0 (conditional rounding, retried with probability
 * <= β). β = 0 gives c + √d, which holds deterministically (each coordinate moves by < 1).
 */
export function roundedL2NormBound(l2Norm: number, dimension: number, beta = 0): number {
  requireNonNegative('l2Norm', l2Norm);
  requireCount('dimension', dimension, 1);
  if (!(beta >= 0 && beta < 1)) {
    throw new InvalidArgumentError('beta', `beta must be in [0, 1), got ${beta}`);
  }
  const bound1 = l2Norm + Math.sqrt(dimension);
  if (beta === 0) return bound1;
  const sq =
    l2Norm * l2Norm +
    0.25 * dimension +
    Math.sqrt(2 * Math.log(1 / beta)) * (l2Norm + 0.5 * Math.sqrt(dimension));
  return Math.min(bound1, Math.sqrt(sq));
}

/** Sensitivities (integer units) of a discrete release after rounding inflation. */
export function discreteSensitivities(p: DiscreteNoiseParams): { l2: number; l1: number } {
  const l2 = roundedL2NormBound(p.l2ClipNorm / p.granularity, p.dimension, p.beta);
  // An integer vector has L1 <= √d L2 and L1 <= L2².
  return { l2, l1: l2 * Math.min(Math.sqrt(p.dimension), l2) };
}

/**
 * RDP at integer order α of one discrete release on the full data (no subsampling):
 *  - distributed discrete Gaussian: KLS21 Proposition 14, with τ = 10 Σ_{k=1}^{n−1}
 *    exp(−2π²σ² k/(k+1)) for n contributors of local std σ:
 *    min( α/2·s2² + τd, α/2·(s2² + 2 s1 τ + τ² d), α/2·(s2 + √d τ)² ), s = Δ/(√n σ);
 *  - Skellam: Agarwal, Kairouz, Liu 2021 (Theorem 3.5 / Corollary 3.6) with total variance μ = nσ²:
 *    αΔ2²/(2μ) + min( ((2α−1)Δ2² + 6Δ1)/(4μ²), 3Δ1/(2μ) ).
 * No contributors or zero noise gives ∞.
 */
export function rdpOfDiscreteRelease(
  event: DistributedDiscreteGaussianEvent | SkellamEvent,
  order: number,
): number {
  const { l2, l1 } = discreteSensitivities(event);
  const n = event.contributors;
  const sigma = event.localStddev;
  if (n === 0 || sigma === 0) return Infinity;
  const a = order;
  if (event.kind === 'skellam') {
    const mu = n * sigma * sigma;
    return (
      (a * l2 * l2) / (2 * mu) +
      Math.min(((2 * a - 1) * l2 * l2 + 6 * l1) / (4 * mu * mu), (3 * l1) / (2 * mu))
    );
  }
  let tau = 0;
  for (let k = 1; k < n; k++) tau += Math.exp(-2 * Math.PI * Math.PI * sigma * sigma * (k / (k + 1)));
  tau *= 10;
  const d = event.dimension;
  const s2 = l2 / (Math.sqrt(n) * sigma);
  const s1 = l1 / (Math.sqrt(n) * sigma);
  return Math.min(
    (a / 2) * s2 * s2 + tau * d,
    (a / 2) * (s2 * s2 + 2 * s1 * tau + tau * tau * d),
    (a / 2) * (s2 + Math.sqrt(d) * tau) ** 2,
  );
}

/**
 * RDP curve of a discrete release, optionally Poisson-subsampled at rate q. The noise (a sum of
 * discrete Gaussians, or a Skellam) is symmetric and neighbouring releases are integer shifts of
 * it mixed over coupled rounding, so the tight symmetric subsampling bound applies
 * (rdpPoissonSubsampledSymmetricCurve; docs/privacy.md): at integer orders the tight bound, at a
 * fractional order the smaller of its Taylor bound and the chord between neighbouring integer orders.
 */
export function rdpOfDiscreteEvent(
  event: DistributedDiscreteGaussianEvent | SkellamEvent,
  samplingRate: number,
  orders: readonly number[],
): number[] {
  return rdpPoissonSubsampledSymmetricCurve(samplingRate, (l) => rdpOfDiscreteRelease(event, l), orders);
}

/**
 * The noise multiplier of the single Gaussian equivalent to a nest of Gaussian, Composed and
 * SelfComposed events (Mironov, Talwar, Zhang 2019 §3: k Gaussian queries of σ_i compose to one
 * with σ = (Σ σ_i^{−2})^{−1/2}), or undefined when `event` contains anything else.
 */
export function effectiveNoiseMultiplier(event: DpEvent): number | undefined {
  switch (event.kind) {
    case 'gaussian':
      return event.noiseMultiplier;
    case 'self-composed': {
      const s = effectiveNoiseMultiplier(event.event);
      return s === undefined ? undefined : s / Math.sqrt(event.count);
    }
    case 'composed': {
      let inv = 0;
      for (const e of event.events) {
        const s = effectiveNoiseMultiplier(e);
        if (s === undefined) return undefined;
        inv += 1 / (s * s);
      }
      return 1 / Math.sqrt(inv);
    }
    default:
      return undefined;
  }
}

function checkEvent(event: DpEvent): DpEvent {
  if (typeof event !== 'object' || event === null || !EVENT_KINDS.includes(event.kind)) {
    throw new InvalidArgumentError('event', `not a DpEvent: ${JSON.stringify(event)}`);
  }
  return event;
}

/**
 * Rebuilds a DpEvent from parsed JSON (e.g. a ledger line), validating every field through the
 * factory functions above. Throws InvalidStateError naming the path of the bad part.
 */
export function dpEventFromJSON(value: unknown, path = 'event'): DpEvent {
  if (typeof value !== 'object' || value === null) {
    throw new InvalidStateError(`${path}: expected an object, got ${JSON.stringify(value)}`);
  }
  const v = value as Record<string, unknown>;
  const num = (k: string): number => {
    const x = v[k];
    if (typeof x !== 'number') {
      throw new InvalidStateError(`${path}.${k}: expected a number, got ${JSON.stringify(x)}`);
    }
    return x;
  };
  try {
    switch (v['kind']) {
      case 'gaussian':
        return gaussianEvent(num('noiseMultiplier'));
      case 'poisson-sampled':
        return poissonSampledEvent(num('samplingRate'), dpEventFromJSON(v['event'], `${path}.event`));
      case 'sampled-without-replacement':
        return sampledWithoutReplacementEvent(
          num('sourceSize'),
          num('sampleSize'),
          dpEventFromJSON(v['event'], `${path}.event`),
        );
      case 'self-composed':
        return selfComposedEvent(dpEventFromJSON(v['event'], `${path}.event`), num('count'));
      case 'composed': {
        const events = v['events'];
        if (!Array.isArray(events)) throw new InvalidStateError(`${path}.events: expected an array`);
        return composedEvent(events.map((e, i) => dpEventFromJSON(e, `${path}.events[${i}]`)));
      }
      case 'distributed-discrete-gaussian':
      case 'skellam': {
        const params = {
          l2ClipNorm: num('l2ClipNorm'),
          granularity: num('granularity'),
          dimension: num('dimension'),
          beta: num('beta'),
          localStddev: num('localStddev'),
          contributors: num('contributors'),
        };
        return v['kind'] === 'skellam' ? skellamEvent(params) : distributedDiscreteGaussianEvent(params);
      }
      case 'no-op':
        return noOpEvent();
      case 'non-private':
        return nonPrivateEvent();
      default:
        throw new InvalidStateError(
          `${path}.kind: expected one of ${EVENT_KINDS.join(', ')}, got ${JSON.stringify(v['kind'])}`,
        );
    }
  } catch (err) {
    if (err instanceof InvalidArgumentError) {
      throw new InvalidStateError(`${path}: ${err.message}`, { cause: err });
    }
    throw err;
  }
}
