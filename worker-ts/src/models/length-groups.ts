// Length-grouped micro-batches for sequence models: a worker's sampled records sorted by length
// and cut into micro-batches, each padded only to its own longest record instead of the dataset's
// maxTokens. Per-example gradients are independent of the other records of a batch and padding is
// masked, so the clipped sum Σᵢ clip(gᵢ, C) is the padded batch's up to float rounding: the
// sampling, the clipping and the privacy analysis are untouched; only padded positions (wasted
// FLOPs) go. Grouping by length is the "bucketing" of sequence-to-sequence training (e.g. Khomenko
// et al. 2016, "Accelerating recurrent neural network training using sequence bucketing and
// multi-GPU data parallelization"); here it is exact because each micro-batch's per-example
// gradients are computed in one pass with dp's engine.
//
// The cut: records sorted by length, contiguous runs of that order as micro-batches (an optimal
// partition of sorted lengths is contiguous), chosen by dynamic programming to minimise
//   Σ_groups (records · longest length + overheadTokens),
// each group at most tokensPerGroup tokens (the memory bound; a record longer than that is a group
// of its own). overheadTokens is the fixed cost of one more pass (TensorFlow op dispatch, the
// per-site rules), in tokens: measured for MiniLM on one thread (bench/README.md) at ~45 ms per
// pass, ~80 tokens of 0.58 ms.

export interface LengthGroup {
  /** Indices of the group's records in the batch, shortest first. */
  indices: number[];
  /** The longest record's length: the group's padded length. */
  length: number;
}

export interface LengthGroupOptions {
  /** Most tokens (records × padded length) in one group (≥ 1). */
  tokensPerGroup: number;
  /** The cost of one more group in tokens (default 80). */
  overheadTokens?: number;
}

/** Groups records by length (see the file comment). Every index appears in exactly one group. */
export function lengthGroups(lengths: ArrayLike<number>, o: LengthGroupOptions): LengthGroup[] {
  const n = lengths.length;
  const budget = o.tokensPerGroup;
  const overhead = o.overheadTokens ?? 80;
  if (!(Number.isInteger(budget) && budget >= 1))
    throw new RangeError(`tokensPerGroup must be an integer ≥ 1, got ${budget}`);
  if (!(Number.isFinite(overhead) && overhead >= 0))
    throw new RangeError(`overheadTokens must be a finite number ≥ 0, got ${overhead}`);
  for (let i = 0; i < n; i++)
    if (!(Number.isInteger(lengths[i]) && lengths[i]! >= 1))
      throw new RangeError(`record ${i}'s length must be an integer ≥ 1, got ${lengths[i]}`);
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => lengths[a]! - lengths[b]! || a - b);
  const len = (k: number) => lengths[order[k]!]!;
  // cost[j]: the cheapest cut of the j shortest records; from[j]: where its last group starts.
  const cost = new Float64Array(n + 1).fill(Infinity);
  const from = new Int32Array(n + 1);
  cost[0] = 0;
  for (let j = 1; j <= n; j++) {
    const L = len(j - 1);
    for (let i = j - 1; i >= 0; i--) {
      const size = j - i;
      if (size > 1 && size * L > budget) break;
      const c = cost[i]! + size * L + overhead;
      if (c < cost[j]!) {
        cost[j] = c;
        from[j] = i;
      }
    }
  }
  const groups: LengthGroup[] = [];
  for (let j = n; j > 0; j = from[j]!) {
    const i = from[j]!;
    groups.push({ indices: order.slice(i, j), length: len(j - 1) });
  }
  return groups.reverse();
}
