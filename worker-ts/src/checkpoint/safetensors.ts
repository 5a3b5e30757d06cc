// safetensors (https://github.com/huggingface/safetensors): an 8-byte little-endian header length
// N, N bytes of UTF-8 JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__":
// {string: string}}, then the raw little-endian tensor bytes, offsets relative to the end of the
// header. We pad the header with spaces to a multiple of 8 bytes (allowed by the format; it keeps
// the data aligned) and write tensors in name order. The reader checks everything the format
// promises, so a corrupt or truncated file is refused rather than half-read.
import { CheckpointError } from './errors.js';

export type SafetensorsDtype = 'F32' | 'F64' | 'I32' | 'I64' | 'U8';

export type TensorData = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array;

export interface NamedTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  data: TensorData;
}

const DTYPE_BYTES: Record<SafetensorsDtype, number> = { F32: 4, F64: 8, I32: 4, I64: 8, U8: 1 };
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

function dtypeOf(data: TensorData): SafetensorsDtype {
  if (data instanceof Float32Array) return 'F32';
  if (data instanceof Float64Array) return 'F64';
  if (data instanceof Int32Array) return 'I32';
  if (data instanceof BigInt64Array) return 'I64';
  return 'U8';
}

/** Builds the helper record for a typed array; shape defaults to [length]. */
export function tensor(data: TensorData, shape: number[] = [data.length]): NamedTensor {
  return { dtype: dtypeOf(data), shape, data };
}

/** Serialises tensors (and optional string metadata) to safetensors bytes. */
export function encodeSafetensors(
  tensors: Record<string, NamedTensor>,
  metadata: Record<string, string> = {},
): Buffer {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    if (name === '__metadata__') throw new RangeError("'__metadata__' is reserved in safetensors");
    const t = tensors[name]!;
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length || dtypeOf(t.data) !== t.dtype) {
      throw new RangeError(`tensor '${name}': shape [${t.shape}] / ${t.dtype} does not match its data`);
    }
    const bytes = t.data.byteLength;
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  const pad = (8 - (Buffer.byteLength(json) % 8)) % 8;
  json += ' '.repeat(pad);
  const headerBytes = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + headerBytes.length + offset);
  out.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  headerBytes.copy(out, 8);
  let pos = 8 + headerBytes.length;
  for (const name of names) {
    const d = tensors[name]!.data;
    // Typed arrays are little-endian on every platform Node supports for tfjs-node (x64, arm64).
    Buffer.from(d.buffer, d.byteOffset, d.byteLength).copy(out, pos);
    pos += d.byteLength;
  }
  return out;
}

export interface DecodedSafetensors {
  tensors: Record<string, NamedTensor>;
  metadata: Record<string, string>;
}

/** Parses safetensors bytes; throws CheckpointError naming `file` and what is wrong. */
export function decodeSafetensors(buf: Uint8Array, file: string): DecodedSafetensors {
  const fail = (why: string): never => {
    throw new CheckpointError(`${file}: not a valid safetensors file: ${why}`, file);
  };
  if (buf.length < 8) fail(`${buf.length} bytes is shorter than the 8-byte header length`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = Number(view.getBigUint64(0, true));
  if (n > MAX_HEADER_BYTES || 8 + n > buf.length) {
    fail(`header length ${n} does not fit in the file's ${buf.length} bytes (truncated?)`);
  }
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(buf.subarray(8, 8 + n)).toString('utf8'));
  } catch (err) {
    fail(`header is not JSON (${(err as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header))
    fail('header is not a JSON object');
  const dataStart = 8 + n;
  const dataLen = buf.length - dataStart;
  const tensors: Record<string, NamedTensor> = {};
  let metadata: Record<string, string> = {};
  const spans: [number, number, string][] = [];
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null) fail('__metadata__ is not an object');
      for (const v of Object.values(entry as object))
        if (typeof v !== 'string') fail('__metadata__ values must be strings');
      metadata = entry as Record<string, string>;
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const dtype = e.dtype as SafetensorsDtype;
    if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES))
      fail(`tensor '${name}' has unsupported dtype ${String(e.dtype)}`);
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0))
      fail(`tensor '${name}' has a bad shape`);
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isInteger(o) && o >= 0)) {
      fail(`tensor '${name}' has bad data_offsets`);
    }
    const [begin, end] = offs as [number, number];
    const count = (shape as number[]).reduce((a, b) => a * b, 1);
    if (end < begin || end - begin !== count * DTYPE_BYTES[dtype]) {
      fail(
        `tensor '${name}': data_offsets [${begin}, ${end}] do not match shape [${String(shape)}] of ${dtype}`,
      );
    }
    if (end > dataLen)
      fail(`tensor '${name}' ends at byte ${end} but the data section has ${dataLen} bytes (truncated?)`);
    spans.push([begin, end, name]);
    const bytes = Uint8Array.from(buf.subarray(dataStart + begin, dataStart + end));
    const ab = bytes.buffer;
    const data: TensorData =
      dtype === 'F32'
        ? new Float32Array(ab)
        : dtype === 'F64'
          ? new Float64Array(ab)
          : dtype === 'I32'
            ? new Int32Array(ab)
            : dtype === 'I64'
              ? new BigInt64Array(ab)
              : bytes;
    tensors[name] = { dtype, shape: shape as number[], data };
  }
  spans.sort((a, b) => a[0] - b[0]);
  let pos = 0;
  for (const [begin, end, name] of spans) {
    if (begin !== pos) fail(`tensor '${name}' starts at ${begin}, expected ${pos} (overlap or hole)`);
    pos = end;
  }
  if (pos !== dataLen) fail(`${dataLen - pos} trailing bytes after the last tensor`);
  return { tensors, metadata };
}
