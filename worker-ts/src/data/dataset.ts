// The in-memory form every reader produces: one record per example, the privacy unit of the
// accountant. Features are row-major, `featureShape` per record; labels are class indices.

/** A labelled dataset held in memory. Records are the unit of privacy (one record = one example). */
export interface Dataset {
  /** Number of records. */
  size: number;
  /** Shape of one record's features, e.g. [28, 28, 1] or [seqLen]. */
  featureShape: number[];
  /** 'float32' features (pixels in [0, 1], CSV columns) or 'int32' token ids. */
  dtype: 'float32' | 'int32';
  /** size × prod(featureShape) values, row-major. */
  features: Float32Array | Int32Array;
  /** size class labels in [0, numClasses). */
  labels: Int32Array;
  /** Number of classes (max label + 1, or as configured). */
  numClasses: number;
  /** Where the records came from, for error messages and the manifest. */
  source: string;
}

export function recordLength(ds: Pick<Dataset, 'featureShape'>): number {
  return ds.featureShape.reduce((a, b) => a * b, 1);
}

/** The records at `indices` (in that order) as a new dataset. */
export function selectRecords(ds: Dataset, indices: ArrayLike<number>): Dataset {
  const len = recordLength(ds);
  const n = indices.length;
  const features = ds.dtype === 'float32' ? new Float32Array(n * len) : new Int32Array(n * len);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const j = indices[i]!;
    if (j < 0 || j >= ds.size) throw new RangeError(`record ${j} is outside [0, ${ds.size})`);
    features.set(ds.features.subarray(j * len, (j + 1) * len), i * len);
    labels[i] = ds.labels[j]!;
  }
  return { ...ds, size: n, features, labels };
}
