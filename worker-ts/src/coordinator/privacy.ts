// Privacy accounting for the coordinator: the RDP of the Poisson-subsampled Gaussian mechanism
// at integer orders (Mironov, Talwar, Zhang 2019, Section 3.3: exact for integer α), composed
// over rounds with each round's realised noise multiplier, and converted to (ε, δ) with the
// improved conversion of Balle et al. 2020 (the one dp_accounting's RdpAccountant uses).
//
// This is the coordinator's own implementation while @tensorguard/dp's accountant lands; the
// events and the ledger format are independent of which accountant computes ε.

/** One released round as the accountant sees it. */
export interface RoundEvent {
  round: number;
  /** Poisson sampling rate of every record. */
  samplingRate: number;
  /** Realised noise std of the sum divided by the sensitivity: σ·√(s/t). 0 = no noise. */
  noiseMultiplier: number;
  /** Contributors whose noise shares are in the sum. */
  survivors: number;
}

export const RDP_ORDERS: number[] = [
  ...Array.from({ length: 63 }, (_, i) => i + 2),
  72,
  80,
  96,
  112,
  128,
  160,
  192,
  256,
  384,
  512,
  768,
  1024,
];

function logAdd(a: number, b: number): number {
  if (a === -Infinity) return b;
  if (b === -Infinity) return a;
  const m = Math.max(a, b);
  return m + Math.log1p(Math.exp(-Math.abs(a - b)));
}

const lgammaCache: number[] = [0, 0];
function logFactorial(n: number): number {
  for (let i = lgammaCache.length; i <= n; i++) lgammaCache[i] = lgammaCache[i - 1]! + Math.log(i);
  return lgammaCache[n]!;
}

/** RDP ε(α) of one subsampled Gaussian step (rate q, multiplier σ) at integer order α ≥ 2. */
export function rdpSubsampledGaussian(q: number, sigma: number, alpha: number): number {
  if (sigma === 0) return Infinity;
  if (q === 0) return 0;
  if (q === 1) return alpha / (2 * sigma * sigma);
  let logA = -Infinity;
  const lq = Math.log(q);
  const l1q = Math.log1p(-q);
  for (let k = 0; k <= alpha; k++) {
    const logBinom = logFactorial(alpha) - logFactorial(k) - logFactorial(alpha - k);
    logA = logAdd(logA, logBinom + k * lq + (alpha - k) * l1q + (k * k - k) / (2 * sigma * sigma));
  }
  return logA / (alpha - 1);
}

/** ε at δ from RDP values at RDP_ORDERS (Balle et al. 2020, Theorem 21). */
export function epsilonFromRdp(rdp: readonly number[], delta: number): number {
  let best = Infinity;
  RDP_ORDERS.forEach((a, i) => {
    const r = rdp[i]!;
    if (!Number.isFinite(r)) return;
    const eps = r + Math.log1p(-1 / a) - (Math.log(delta) + Math.log(a)) / (a - 1);
    if (eps < best) best = eps;
  });
  return Math.max(0, best);
}

export class RdpAccountant {
  private rdp: number[] = RDP_ORDERS.map(() => 0);
  private readonly rounds = new Set<number>();

  /** Adds a released round; a round already recorded is ignored (no double counting). */
  record(e: RoundEvent): void {
    if (this.rounds.has(e.round)) return;
    this.rounds.add(e.round);
    RDP_ORDERS.forEach(
      (a, i) => (this.rdp[i] = this.rdp[i]! + rdpSubsampledGaussian(e.samplingRate, e.noiseMultiplier, a)),
    );
  }

  get roundCount(): number {
    return this.rounds.size;
  }

  epsilon(delta: number): number {
    return epsilonFromRdp(this.rdp, delta);
  }

  /** ε after also composing `extra` (the budget check for the next round), without recording it. */
  epsilonWith(extra: Omit<RoundEvent, 'round'>, delta: number): number {
    const rdp = RDP_ORDERS.map(
      (a, i) => this.rdp[i]! + rdpSubsampledGaussian(extra.samplingRate, extra.noiseMultiplier, a),
    );
    return epsilonFromRdp(rdp, delta);
  }
}
