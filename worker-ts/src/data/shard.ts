// Sharding: which records worker i trains on. Every record belongs to exactly one shard, so the
// per-record privacy loss of a round is that of one subsampled Gaussian mechanism, whichever
// shard the record is in. Per-shard accounting (a round charges only the shards it contains)
// needs more: a record's shard must not depend on the other records, or removing one record could
// move another into a shard that a round left out. 'hash' (the default) and 'files' have that
// property; 'contiguous' index ranges do not, so under 'contiguous' every round is charged to every
// shard (coordinator.ts, recordRelease).
import { createHmac } from 'node:crypto';

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

/**
 * The shard of every record of `ds`, by a keyed hash of the record itself (its feature bytes and
 * label): HMAC-SHA256(key, record) read as a 64-bit integer, mod `count`. A record's shard
 * depends on nothing but the record and the key, so adding or removing another record moves no
 * record between shards (issue: stable under add/remove-one). The key need not be secret; it is
 * the job's (dataset.shardKey, default the job name), so every worker computes the same shards.
 */
export function hashShards(
  ds: { size: number; features: Float32Array | Int32Array; labels: Int32Array; featureShape: number[] },
  count: number,
  key: string,
): Int32Array {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`worker count must be ≥ 1, got ${count}`);
  const len = ds.featureShape.reduce((a, b) => a * b, 1);
  const bytes = new Uint8Array(ds.features.buffer, ds.features.byteOffset, ds.features.byteLength);
  const label = Buffer.alloc(4);
  const out = new Int32Array(ds.size);
  const n = BigInt(count);
  for (let i = 0; i < ds.size; i++) {
    label.writeInt32LE(ds.labels[i]!, 0);
    const h = createHmac('sha256', key)
      .update(bytes.subarray(i * len * 4, (i + 1) * len * 4))
      .update(label)
      .digest();
    out[i] = Number(h.readBigUInt64BE(0) % n);
  }
  return out;
}
