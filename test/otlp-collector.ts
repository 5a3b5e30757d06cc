// A minimal OTLP/gRPC collector on loopback for the telemetry tests: a grpc-js server implementing
// opentelemetry.proto.collector.{trace,metrics}.v1 Export, decoding the protobuf wire format
// itself (the .proto files are not shipped in node_modules).
import * as grpc from '@grpc/grpc-js';

// ---- a minimal protobuf reader: enough of OTLP to read span names, kinds and attributes ------

type Field = { no: number; wire: number; bytes: Buffer; varint: bigint };

function readFields(buf: Buffer): Field[] {
  const out: Field[] = [];
  let i = 0;
  const varint = (): bigint => {
    let v = 0n;
    for (let shift = 0n; ; shift += 7n) {
      const b = buf[i++]!;
      v |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return v;
    }
  };
  while (i < buf.length) {
    const tag = Number(varint());
    const no = tag >>> 3;
    const wire = tag & 7;
    if (wire === 0) out.push({ no, wire, bytes: Buffer.alloc(0), varint: varint() });
    else if (wire === 1 || wire === 5) {
      const n = wire === 1 ? 8 : 4;
      out.push({ no, wire, bytes: buf.subarray(i, i + n), varint: 0n });
      i += n;
    } else if (wire === 2) {
      const n = Number(varint());
      out.push({ no, wire, bytes: buf.subarray(i, i + n), varint: 0n });
      i += n;
    } else throw new Error(`unsupported wire type ${wire}`);
  }
  return out;
}

const sub = (fields: Field[], no: number) =>
  fields.filter((f) => f.no === no).map((f) => readFields(f.bytes));

export interface Span {
  name: string;
  kind: number;
  attributes: Record<string, string | number | boolean>;
  /** start_time_unix_nano and end_time_unix_nano (0n when absent). */
  startNs: bigint;
  endNs: bigint;
}

/** ExportTraceServiceRequest → spans (resource_spans=1 → scope_spans=2 → spans=2). */
export function decodeSpans(req: Buffer): Span[] {
  const spans: Span[] = [];
  for (const rs of sub(readFields(req), 1)) {
    for (const ss of sub(rs, 2)) {
      for (const sp of sub(ss, 2)) {
        const attributes: Span['attributes'] = {};
        for (const kv of sub(sp, 9)) {
          const key = kv.find((f) => f.no === 1)!.bytes.toString('utf8');
          const any = kv.find((f) => f.no === 2);
          const v = any ? readFields(any.bytes)[0] : undefined;
          // AnyValue: string_value=1, bool_value=2, int_value=3, double_value=4.
          attributes[key] =
            v === undefined
              ? ''
              : v.no === 1
                ? v.bytes.toString('utf8')
                : v.no === 2
                  ? v.varint !== 0n
                  : v.no === 3
                    ? Number(BigInt.asIntN(64, v.varint))
                    : v.no === 4
                      ? v.bytes.readDoubleLE(0)
                      : `<field ${v.no}>`;
        }
        spans.push({
          name: sp.find((f) => f.no === 5)?.bytes.toString('utf8') ?? '',
          kind: Number(sp.find((f) => f.no === 6)?.varint ?? 0n),
          attributes,
          startNs: sp.find((f) => f.no === 7)?.bytes.readBigUInt64LE(0) ?? 0n,
          endNs: sp.find((f) => f.no === 8)?.bytes.readBigUInt64LE(0) ?? 0n,
        });
      }
    }
  }
  return spans;
}

/** A loopback OTLP/gRPC collector that keeps every trace request's bytes (metrics are accepted). */
export async function startCollector(): Promise<{ port: number; traces: Buffer[]; close(): void }> {
  const traces: Buffer[] = [];
  const raw = (p: string): grpc.MethodDefinition<Buffer, Buffer> => ({
    path: p,
    requestStream: false,
    responseStream: false,
    requestSerialize: (b: Buffer) => b,
    requestDeserialize: (b: Buffer) => b,
    // An empty Export*ServiceResponse: full success.
    responseSerialize: () => Buffer.alloc(0),
    responseDeserialize: (b: Buffer) => b,
  });
  const server = new grpc.Server();
  server.addService(
    { Export: raw('/opentelemetry.proto.collector.trace.v1.TraceService/Export') },
    {
      Export: (c: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        traces.push(c.request);
        cb(null, Buffer.alloc(0));
      },
    },
  );
  server.addService(
    { Export: raw('/opentelemetry.proto.collector.metrics.v1.MetricsService/Export') },
    {
      Export: (_c: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
        cb(null, Buffer.alloc(0)),
    },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  return { port, traces, close: () => server.forceShutdown() };
}
