// IDX files (the MNIST / Fashion-MNIST format, LeCun et al.): a 4-byte magic
// (0, 0, dtype, ndim), ndim big-endian uint32 dimensions, then the data, row-major.
// Files may be gzipped (the Debian dataset packages ship them so).
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { DatasetError, unreadable } from './errors.js';

export interface IdxTensor {
  shape: number[];
  /** Only unsigned bytes (dtype 0x08) are supported: the MNIST family uses nothing else. */
  data: Uint8Array;
}

const UBYTE = 0x08;

/** Parses an IDX buffer. Throws DatasetError naming `file` and the offset of the problem. */
export function parseIdx(buf: Uint8Array, file: string): IdxTensor {
  if (buf.length < 4)
    throw new DatasetError(`${file}: ${buf.length} bytes is too short for an IDX header`, file, {
      offset: 0,
    });
  if (buf[0] !== 0 || buf[1] !== 0) {
    throw new DatasetError(`${file}: not an IDX file (its first two bytes should be 00 00)`, file, {
      offset: 0,
    });
  }
  if (buf[2] !== UBYTE) {
    throw new DatasetError(
      `${file}: IDX data type 0x${buf[2]!.toString(16)} is not supported (only 0x08, unsigned byte)`,
      file,
      {
        offset: 2,
      },
    );
  }
  const ndim = buf[3]!;
  const headerLen = 4 + 4 * ndim;
  if (ndim === 0 || buf.length < headerLen) {
    throw new DatasetError(
      `${file}: truncated IDX header (${ndim} dimensions need ${headerLen} bytes, file has ${buf.length})`,
      file,
      {
        offset: buf.length,
      },
    );
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const shape: number[] = [];
  for (let i = 0; i < ndim; i++) shape.push(view.getUint32(4 + 4 * i, false));
  const count = shape.reduce((a, b) => a * b, 1);
  const have = buf.length - headerLen;
  if (have < count) {
    throw new DatasetError(
      `${file}: truncated at byte ${buf.length}: shape [${shape.join(', ')}] needs ${count} data bytes after the ${headerLen}-byte header, found ${have}`,
      file,
      { offset: buf.length },
    );
  }
  if (have > count) {
    throw new DatasetError(
      `${file}: ${have - count} unexpected trailing bytes after offset ${headerLen + count}`,
      file,
      {
        offset: headerLen + count,
      },
    );
  }
  return { shape, data: buf.subarray(headerLen, headerLen + count) };
}

/** Reads an IDX file, gunzipping when it ends in .gz or starts with the gzip magic. */
export function readIdxFile(file: string): IdxTensor {
  let raw: Buffer;
  try {
    raw = fs.readFileSync(file);
  } catch (err) {
    throw unreadable(file, err);
  }
  if (raw[0] === 0x1f && raw[1] === 0x8b) {
    try {
      raw = zlib.gunzipSync(raw);
    } catch (err) {
      throw new DatasetError(
        `${file}: gzip stream is corrupt or truncated (${(err as Error).message})`,
        file,
        {},
        { cause: err },
      );
    }
  }
  return parseIdx(raw, file);
}

/**
 * The dimensions an IDX file declares in its header, reading no record: the first few hundred
 * bytes only (for a gzipped file, the start of the stream, inflated as far as it goes).
 */
export function readIdxShape(file: string): number[] {
  let head: Buffer;
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const buf = Buffer.alloc(4096);
      head = buf.subarray(0, fs.readSync(fd, buf, 0, buf.length, 0));
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    throw unreadable(file, err);
  }
  if (head[0] === 0x1f && head[1] === 0x8b) {
    try {
      head = zlib.gunzipSync(head, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
    } catch (err) {
      throw new DatasetError(
        `${file}: gzip stream is corrupt (${(err as Error).message})`,
        file,
        {},
        { cause: err },
      );
    }
  }
  if (head.length < 4 || head[0] !== 0 || head[1] !== 0)
    throw new DatasetError(`${file}: not an IDX file (bad magic bytes)`, file, { offset: 0 });
  const ndim = head[3]!;
  if (head.length < 4 + 4 * ndim)
    throw new DatasetError(`${file}: the IDX header is truncated`, file, { offset: 4 });
  return Array.from({ length: ndim }, (_, i) => head.readUInt32BE(4 + 4 * i));
}

/** Finds `name` or `name.gz` in `dir`. */
export function findIdx(dir: string, name: string): string {
  for (const candidate of [path.join(dir, name), path.join(dir, `${name}.gz`)]) {
    if (fs.existsSync(candidate)) return candidate;
  }
  throw new DatasetError(
    `${path.join(dir, name)}(.gz) not found: install the Debian package dataset-fashion-mnist or set TENSORGUARD_DATA_DIR`,
    path.join(dir, name),
  );
}

export interface LabelledImages {
  /** [n, rows, cols] pixel bytes. */
  images: IdxTensor;
  /** [n] class labels. */
  labels: Uint8Array;
}

/** Loads an (images, labels) pair of the MNIST layout and checks that they agree. */
export function loadImagePair(dir: string, split: 'train' | 't10k'): LabelledImages {
  const imagesFile = findIdx(dir, `${split}-images-idx3-ubyte`);
  const labelsFile = findIdx(dir, `${split}-labels-idx1-ubyte`);
  const images = readIdxFile(imagesFile);
  const labels = readIdxFile(labelsFile);
  if (images.shape.length !== 3) {
    throw new DatasetError(
      `${imagesFile}: expected 3 dimensions [n, rows, cols], found [${images.shape.join(', ')}]`,
      imagesFile,
      { offset: 3 },
    );
  }
  if (labels.shape.length !== 1 || labels.shape[0] !== images.shape[0]) {
    throw new DatasetError(
      `${labelsFile}: ${labels.shape[0]} labels for ${images.shape[0]} images in ${imagesFile}`,
      labelsFile,
      { offset: 4 },
    );
  }
  return { images, labels: labels.data };
}

/** Default location of the Debian package dataset-fashion-mnist. */
export const DEFAULT_FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

export function fashionMnistDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.TENSORGUARD_DATA_DIR ?? DEFAULT_FASHION_MNIST_DIR;
}
