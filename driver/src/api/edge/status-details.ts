// google.rpc.Status and the standard error details (BadRequest, PreconditionFailure, RetryInfo,
// ErrorInfo), encoded by hand: five small messages do not justify vendoring googleapis' protos
// into the project's proto tree, and every gRPC ecosystem decodes them from the standard
// `grpc-status-details-bin` trailer (Python: grpcio-status; Go: status.FromError; grpcurl).

const TYPE_PREFIX = 'type.googleapis.com/google.rpc.';

export interface FieldViolation {
  /** Path of the bad field in the request, dot-separated (e.g. `spec.document.privacy.delta`). */
  field: string;
  description: string;
}

export interface PreconditionViolation {
  /** A service-specific type, e.g. `PRIVACY_BUDGET`. */
  type: string;
  subject: string;
  description: string;
}

export interface ErrorDetails {
  badRequest?: FieldViolation[];
  preconditionFailure?: PreconditionViolation[];
  /** Milliseconds to wait before retrying. */
  retryDelayMs?: number;
  errorInfo?: { reason: string; domain: string; metadata: Record<string, string> };
}

// ---- minimal protobuf wire encoding -------------------------------------------------------

class Writer {
  private chunks: Buffer[] = [];
  varint(n: number | bigint): this {
    let v = BigInt(n);
    if (v < 0n) v += 1n << 64n; // int32/int64 negatives are ten-byte two's complement
    const bytes: number[] = [];
    while (v > 0x7fn) {
      bytes.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    bytes.push(Number(v));
    this.chunks.push(Buffer.from(bytes));
    return this;
  }
  tag(field: number, wire: 0 | 2): this {
    return this.varint((field << 3) | wire);
  }
  uint(field: number, n: number | bigint): this {
    return n === 0 || n === 0n ? this : this.tag(field, 0).varint(n);
  }
  bytes(field: number, b: Uint8Array): this {
    this.tag(field, 2).varint(b.length);
    this.chunks.push(Buffer.from(b));
    return this;
  }
  string(field: number, s: string): this {
    return s === '' ? this : this.bytes(field, Buffer.from(s, 'utf8'));
  }
  finish(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

type Field = { field: number; wire: number; int?: bigint; bytes?: Buffer };

/** Splits a message into its fields; throws on malformed input. */
function readFields(buf: Buffer): Field[] {
  const out: Field[] = [];
  let i = 0;
  const varint = (): bigint => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      if (i >= buf.length) throw new Error('truncated varint');
      const b = buf[i++]!;
      v |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return v;
      shift += 7n;
      if (shift > 63n) throw new Error('varint too long');
    }
  };
  while (i < buf.length) {
    const key = Number(varint());
    const field = key >> 3;
    const wire = key & 7;
    if (wire === 0) out.push({ field, wire, int: varint() });
    else if (wire === 2) {
      const len = Number(varint());
      if (i + len > buf.length) throw new Error('truncated bytes');
      out.push({ field, wire, bytes: buf.subarray(i, i + len) });
      i += len;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else throw new Error(`unsupported wire type ${wire}`);
  }
  return out;
}

const str = (f: Field | undefined) => f?.bytes?.toString('utf8') ?? '';

// ---- google.rpc messages --------------------------------------------------------------------

function any(typeName: string, value: Buffer): Buffer {
  return new Writer()
    .string(1, TYPE_PREFIX + typeName)
    .bytes(2, value)
    .finish();
}

/** Serializes google.rpc.Status{code, message, details}. */
export function encodeStatus(code: number, message: string, d: ErrorDetails): Buffer {
  const details: Buffer[] = [];
  if (d.badRequest) {
    const w = new Writer();
    for (const v of d.badRequest)
      w.bytes(1, new Writer().string(1, v.field).string(2, v.description).finish());
    details.push(any('BadRequest', w.finish()));
  }
  if (d.preconditionFailure) {
    const w = new Writer();
    for (const v of d.preconditionFailure) {
      w.bytes(1, new Writer().string(1, v.type).string(2, v.subject).string(3, v.description).finish());
    }
    details.push(any('PreconditionFailure', w.finish()));
  }
  if (d.retryDelayMs !== undefined) {
    const ms = Math.max(0, Math.ceil(d.retryDelayMs));
    const duration = new Writer()
      .uint(1, Math.floor(ms / 1000))
      .uint(2, (ms % 1000) * 1_000_000)
      .finish();
    details.push(any('RetryInfo', new Writer().bytes(1, duration).finish()));
  }
  if (d.errorInfo) {
    const w = new Writer().string(1, d.errorInfo.reason).string(2, d.errorInfo.domain);
    for (const [k, v] of Object.entries(d.errorInfo.metadata)) {
      w.bytes(3, new Writer().string(1, k).string(2, v).finish());
    }
    details.push(any('ErrorInfo', w.finish()));
  }
  const w = new Writer().uint(1, code).string(2, message);
  for (const d of details) w.bytes(3, d);
  return w.finish();
}

/** Parses what encodeStatus writes (and the same messages from any other server). */
export function decodeStatus(buf: Buffer): { code: number; message: string; details: ErrorDetails } {
  const fields = readFields(buf);
  const details: ErrorDetails = {};
  for (const f of fields.filter((f) => f.field === 3 && f.bytes)) {
    const anyFields = readFields(f.bytes!);
    const typeUrl = str(anyFields.find((a) => a.field === 1));
    const value = anyFields.find((a) => a.field === 2)?.bytes ?? Buffer.alloc(0);
    const inner = readFields(value);
    switch (typeUrl.slice(TYPE_PREFIX.length)) {
      case 'BadRequest':
        details.badRequest = inner.map((v) => {
          const vf = readFields(v.bytes!);
          return {
            field: str(vf.find((x) => x.field === 1)),
            description: str(vf.find((x) => x.field === 2)),
          };
        });
        break;
      case 'PreconditionFailure':
        details.preconditionFailure = inner.map((v) => {
          const vf = readFields(v.bytes!);
          return {
            type: str(vf.find((x) => x.field === 1)),
            subject: str(vf.find((x) => x.field === 2)),
            description: str(vf.find((x) => x.field === 3)),
          };
        });
        break;
      case 'RetryInfo': {
        const dur = readFields(inner.find((x) => x.field === 1)?.bytes ?? Buffer.alloc(0));
        const s = Number(dur.find((x) => x.field === 1)?.int ?? 0n);
        const ns = Number(dur.find((x) => x.field === 2)?.int ?? 0n);
        details.retryDelayMs = s * 1000 + ns / 1e6;
        break;
      }
      case 'ErrorInfo': {
        const metadata: Record<string, string> = {};
        for (const e of inner.filter((x) => x.field === 3)) {
          const ef = readFields(e.bytes!);
          metadata[str(ef.find((x) => x.field === 1))] = str(ef.find((x) => x.field === 2));
        }
        details.errorInfo = {
          reason: str(inner.find((x) => x.field === 1)),
          domain: str(inner.find((x) => x.field === 2)),
          metadata,
        };
        break;
      }
    }
  }
  return {
    code: Number(fields.find((f) => f.field === 1)?.int ?? 0n),
    message: str(fields.find((f) => f.field === 2)),
    details,
  };
}
