// Sharding: which records worker i trains on. Every record belongs to exactly one shard, so the
// per-record privacy loss of a round is that of one subsampled Gaussian mechanism, whichever
// shard the record is in.

/** Half-open record range [start, end) of worker `index` of `count`, contiguous and balanced. */
export function shardRange(size: number, count: number, index: number): { start: number; end: number } {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`worker count must be ≥ 1, got ${count}`);
  if (!Number.isInteger(index) || index < 0 || index >= count) {
    throw new RangeError(`worker index ${index} is outside [0, ${count})`);
  }
  const base = Math.floor(size / count);
  const extra = size % count;
  const start = index * base + Math.min(index, extra);
  return { start, end: start + base + (index < extra ? 1 : 0) };
}

/** Files of worker `index` when the dataset is a list of files: round-robin assignment. */
export function shardFiles(files: readonly string[], count: number, index: number): string[] {
  shardRange(files.length, count, index);
  return files.filter((_, i) => i % count === index);
}
