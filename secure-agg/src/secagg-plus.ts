// SecAgg+ (Bell, Bonawitz, Gascón, Lepoint, Raykova, CCS 2020): instead of every worker masking
// against and secret-sharing with every other worker (O(n) work and messages per worker), each
// worker does so only with its neighbours in a sparse graph of degree k = O(log n). The graph here
// is a Harary graph H(k, n) (ring lattice: position i is joined to positions i±1 … i±k/2) laid over a
// uniformly random permutation of the roster drawn from a public seed, so every worker has exactly k
// neighbours and the neighbourhoods are independent of worker identities.
//
// Parameters (k, t) are chosen by `chooseSecAggPlusParams` for a stated security and correctness:
// with dropouts independent of the graph at rate at most δ, and a fraction γ of workers colluding
// with the (honest-but-curious) aggregator,
//   correctness: every worker's secrets stay reconstructable, i.e. at least t of its k+1 share
//     holders (neighbours and itself) survive:          n · P[Bin(k+1, 1-δ) < t] ≤ 2^-η
//   privacy (a): the graph of surviving honest workers stays connected, so the aggregator learns
//     nothing finer than the total. H(k, n) minus a set of nodes disconnects only when two disjoint
//     runs of ≥ k/2 consecutive positions are all removed:  (n² / 2) · (δ+γ)^k ≤ 2^-σ
//   privacy (b): colluders hold fewer than t shares of any honest worker's secrets:
//                                                        n · P[Bin(k+1, γ) ≥ t] ≤ 2^-σ
//   and t > (k+1)/2, so no worker's two secrets can both be rebuilt even by an aggregator that tells
//   different workers different survivor sets (each honest worker answers one unmask request).
// When the smallest such k reaches n - 1 the graph is complete and the protocol is Bonawitz et al.
import { createCipheriv } from 'node:crypto';
import { ConfigError, MalformedMessageError } from './errors.js';

export interface SecAggPlusOptions {
  /** Number of workers n in the round (≥ 2). */
  workers: number;
  /** Largest expected fraction of workers that drop during a round, in [0, 0.5). Default 0.1. */
  dropoutRate?: number;
  /** Fraction of workers assumed to collude with the aggregator, in [0, 0.5). Default 0. */
  corruptFraction?: number;
  /** Statistical security parameter σ: privacy fails with probability ≤ 2^-σ. Default 40. */
  securityBits?: number;
  /** Correctness parameter η: a round aborts for lack of shares with probability ≤ 2^-η. Default 20. */
  correctnessBits?: number;
}

export interface SecAggPlusParams {
  /** Neighbours per worker (k); n - 1 when the graph is complete. */
  degree: number;
  /** Shares needed to rebuild a worker's secret, out of its degree + 1 holders. */
  threshold: number;
  /** True when the graph is complete (plain Bonawitz et al.). */
  complete: boolean;
  /** log2 of the bound on the probability that a round aborts for lack of shares. */
  log2FailureBound: number;
  /** log2 of the bound on the probability that privacy fails. */
  log2SecurityBound: number;
}

function logBinomPmfs(k: number, p: number): number[] {
  // log P[Bin(k, p) = j] for j = 0..k, with log C(k, j) built incrementally.
  const out: number[] = [];
  let logC = 0;
  const lp = Math.log(p);
  const lq = Math.log1p(-p);
  for (let j = 0; j <= k; j++) {
    if (j > 0) logC += Math.log(k - j + 1) - Math.log(j);
    const a = j === 0 ? 0 : j * lp;
    const b = k - j === 0 ? 0 : (k - j) * lq;
    out.push(logC + a + b);
  }
  return out;
}

function log2Sum(logs: number[]): number {
  if (logs.length === 0) return -Infinity;
  const m = Math.max(...logs);
  if (m === -Infinity) return -Infinity;
  return (m + Math.log(logs.reduce((s, l) => s + Math.exp(l - m), 0))) / Math.LN2;
}

/** log2 P[Bin(k, p) < t]. */
export function log2BinomBelow(k: number, p: number, t: number): number {
  if (p <= 0) return t > 0 ? 0 : -Infinity;
  if (p >= 1) return t > k ? 0 : -Infinity;
  return log2Sum(logBinomPmfs(k, p).slice(0, Math.max(0, t)));
}

/** log2 P[Bin(k, p) ≥ t]. */
export function log2BinomAtLeast(k: number, p: number, t: number): number {
  if (p <= 0) return t <= 0 ? 0 : -Infinity;
  if (p >= 1) return t <= k ? 0 : -Infinity;
  return log2Sum(logBinomPmfs(k, p).slice(Math.max(0, t)));
}

function fraction(field: string, v: number): number {
  if (!Number.isFinite(v) || v < 0 || v >= 0.5) {
    throw new ConfigError(field, `must be in [0, 0.5), got ${v}`);
  }
  return v;
}

/**
 * The smallest even degree k (and its threshold t) that meets the correctness and privacy bounds
 * above; the complete graph when no sparser one does. Throws ConfigError when even the complete
 * graph cannot meet them (too many dropouts or colluders for n workers).
 */
export function chooseSecAggPlusParams(options: SecAggPlusOptions): SecAggPlusParams {
  const n = options.workers;
  if (!Number.isSafeInteger(n) || n < 2) throw new ConfigError('workers', `must be an integer ≥ 2, got ${n}`);
  const delta = fraction('dropoutRate', options.dropoutRate ?? 0.1);
  const gamma = fraction('corruptFraction', options.corruptFraction ?? 0);
  const sigma = options.securityBits ?? 40;
  const eta = options.correctnessBits ?? 20;
  if (!(sigma > 0 && sigma <= 128))
    throw new ConfigError('securityBits', `must be in (0, 128], got ${sigma}`);
  if (!(eta > 0 && eta <= 128)) throw new ConfigError('correctnessBits', `must be in (0, 128], got ${eta}`);
  const log2n = Math.log2(n);
  const evaluate = (k: number, complete: boolean) => {
    const holders = k + 1;
    let t = Math.floor(holders / 2) + 1;
    // Raise t until colluders cannot reach it.
    while (t <= holders && gamma > 0 && log2n + log2BinomAtLeast(holders, gamma, t) > -sigma) t++;
    if (t > holders) return undefined;
    // With the complete graph all holder sets coincide: one event, no union bound over workers.
    const fail = (complete ? 0 : log2n) + log2BinomBelow(holders, 1 - delta, t);
    const disconnect = complete ? -Infinity : 2 * log2n - 1 + k * Math.log2(delta + gamma);
    const collude = gamma > 0 ? log2n + log2BinomAtLeast(holders, gamma, t) : -Infinity;
    const sec = Math.max(disconnect, collude);
    if (fail > -eta || sec > -sigma) return undefined;
    return { degree: k, threshold: t, complete, log2FailureBound: fail, log2SecurityBound: sec };
  };
  for (let k = 2; k < n - 1; k += 2) {
    const p = evaluate(k, false);
    if (p) return p;
  }
  const full = evaluate(n - 1, true);
  if (full) return full;
  throw new ConfigError(
    'workers',
    `${n} workers cannot meet 2^-${eta} failure and 2^-${sigma} privacy bounds with dropout rate ${delta} ` +
      `and corrupt fraction ${gamma}, even with a complete graph; add workers or relax the bounds`,
  );
}

/** A deterministic uniform integer stream from a 32-byte public seed (AES-128-CTR). */
function seededInts(seed: Uint8Array): (bound: number) => number {
  if (seed.length < 16) throw new MalformedMessageError(`a graph seed is ≥ 16 bytes, got ${seed.length}`);
  const cipher = createCipheriv('aes-128-ctr', seed.subarray(0, 16), Buffer.alloc(16));
  let buf = new Uint32Array(0);
  let pos = 0;
  const next = () => {
    if (pos >= buf.length) {
      const b = cipher.update(Buffer.alloc(4096));
      buf = new Uint32Array(Uint8Array.from(b).buffer);
      pos = 0;
    }
    return buf[pos++]!;
  };
  return (bound) => {
    // Rejection sampling: uniform in [0, bound).
    const limit = Math.floor(4294967296 / bound) * bound;
    for (;;) {
      const r = next();
      if (r < limit) return r % bound;
    }
  };
}

/**
 * Neighbour lists (sorted roster indices, excluding the worker itself) of the Harary graph
 * H(degree, n) over the permutation drawn from `seed`. degree ≥ n - 1 gives the complete graph.
 * Every worker computes the same graph from the same (n, degree, seed).
 */
export function neighbourGraph(n: number, degree: number, seed: Uint8Array): number[][] {
  if (!Number.isSafeInteger(n) || n < 1) throw new ConfigError('workers', `must be ≥ 1, got ${n}`);
  if (degree >= n - 1) {
    return Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => j).filter((j) => j !== i));
  }
  if (degree < 2 || degree % 2 !== 0) throw new ConfigError('degree', `must be even and ≥ 2, got ${degree}`);
  const rand = seededInts(seed);
  const perm = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rand(i + 1);
    [perm[i], perm[j]] = [perm[j]!, perm[i]!];
  }
  const half = degree / 2;
  const out: number[][] = Array.from({ length: n }, () => []);
  for (let pos = 0; pos < n; pos++) {
    const u = perm[pos]!;
    for (let o = 1; o <= half; o++) {
      out[u]!.push(perm[(pos + o) % n]!, perm[(pos - o + n) % n]!);
    }
  }
  return out.map((l) => [...new Set(l)].sort((a, b) => a - b));
}
