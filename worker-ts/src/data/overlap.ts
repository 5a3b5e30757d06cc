// A held-out split that shares records with the training set is not held out: its accuracy and
// loss (reported, exported, charted) would then say something about training records without any
// noise. For the formats where the user supplies both files (csv, jsonl), each worker hashes its
// shard's records and the test split's, and refuses to train on an overlap. Only counts leave this
// module, never a record.
import { createHash } from 'node:crypto';
import type { RunConfig } from '../config.js';
import { recordLength, type Dataset } from './dataset.js';
import { DatasetError } from './errors.js';

/** SHA-256 of each record's feature bytes and label. */
function recordHashes(ds: Dataset): string[] {
  const len = recordLength(ds);
  const out: string[] = [];
  for (let i = 0; i < ds.size; i++) {
    const f = ds.features.subarray(i * len, (i + 1) * len);
    const label = new Int32Array([ds.labels[i]!]);
    out.push(
      createHash('sha256')
        .update(new Uint8Array(f.buffer, f.byteOffset, f.byteLength))
        .update(new Uint8Array(label.buffer))
        .digest('hex'),
    );
  }
  return out;
}

/**
 * Throws DatasetError naming dataset.testPath when any of `shard`'s records (same features and
 * label) is also in `test`. Applies to csv and jsonl with a testPath of the user's; presets and
 * IDX come with disjoint splits.
 */
export function refuseTestOverlap(cfg: RunConfig, shard: Dataset, test: () => Dataset): void {
  const d = cfg.dataset;
  if ((d.format !== 'csv' && d.format !== 'jsonl') || d.testPath === undefined) return;
  const held = new Set(recordHashes(test()));
  let overlap = 0;
  for (const h of recordHashes(shard)) if (held.has(h)) overlap++;
  if (overlap > 0) {
    throw new DatasetError(
      `dataset.testPath: ${overlap} of this worker's ${shard.size} training records also appear in the test set (same features and label), so held-out accuracy and loss would describe training records; remove them from one of the two files`,
      d.testPath,
    );
  }
}
