// OpenTelemetry export of `tensorguard serve` (OTEL_EXPORTER_OTLP_ENDPOINT, OTLP/gRPC): a small
// OTLP trace collector on loopback (a grpc-js server implementing
// opentelemetry.proto.collector.trace.v1.TraceService/Export, decoding the protobuf wire format
// itself: the .proto files are not shipped in node_modules) receives the server span of each
// TrainingService call, and nothing secret or job-specific is in what it receives.
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { bearer, call, client, jobDocument, keyFile, sleep, startServer, tmpDir } from './helpers.js';

const KEY = 'tg_otel_test_key_SECRET_0123456789abc';

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

interface Span {
  name: string;
  kind: number;
  attributes: Record<string, string | number | boolean>;
}

/** ExportTraceServiceRequest → spans (resource_spans=1 → scope_spans=2 → spans=2). */
function decodeSpans(req: Buffer): Span[] {
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
        });
      }
    }
  }
  return spans;
}

/** A loopback OTLP/gRPC collector that keeps every trace request's bytes (metrics are accepted). */
async function startCollector(): Promise<{ port: number; traces: Buffer[]; close(): void }> {
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

describe('tensorguard serve: OpenTelemetry export (OTLP/gRPC)', function () {
  this.timeout(120_000);

  it('exports a server span per TrainingService call, without API keys or job data', async () => {
    const dir = tmpDir('otel');
    const collector = await startCollector();
    const server = await startServer(
      [
        '--listen',
        '127.0.0.1:0',
        '--api-keys',
        keyFile(dir, [{ id: 'otel-key', tenant: 'team-otel', key: KEY }]),
        '--db',
        path.join(dir, 'jobs.db'),
        '--backend',
        'simulated',
        '--local-round-ms',
        '20',
      ],
      {
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collector.port}`,
        OTEL_BSP_SCHEDULE_DELAY: '200',
        OTEL_METRIC_EXPORT_INTERVAL: '1000',
      },
    );
    const c = client(server.address);
    try {
      const doc = jobDocument({ name: 'otel-marker-job', rounds: 2 });
      const { job } = await call(
        c,
        c.submitJob,
        { requestId: 'otel-marker-request', spec: { document: doc }, validateOnly: false },
        bearer(KEY),
      );
      await call(c, c.getJob, { jobId: job!.jobId }, bearer(KEY));
      // A refused call is traced too, as an error.
      await call(c, c.getJob, { jobId: job!.jobId }, bearer('tg_wrong_key_0123456789abcdefghij')).catch(
        () => undefined,
      );
      let spans: Span[] = [];
      for (let i = 0; i < 100; i++) {
        spans = collector.traces.flatMap(decodeSpans);
        if (spans.filter((s) => s.name.startsWith('tensorguard.v1.TrainingService/')).length >= 3) break;
        await sleep(100);
      }
      const rpc = spans.filter((s) => s.name.startsWith('tensorguard.v1.TrainingService/'));
      expect(rpc.map((s) => s.name)).to.include.members([
        'tensorguard.v1.TrainingService/SubmitJob',
        'tensorguard.v1.TrainingService/GetJob',
      ]);
      const submit = rpc.find((s) => s.name.endsWith('/SubmitJob'))!;
      expect(submit.kind).to.equal(2); // SPAN_KIND_SERVER
      expect(submit.attributes).to.deep.include({
        'rpc.system': 'grpc',
        'rpc.service': 'tensorguard.v1.TrainingService',
        'rpc.method': 'SubmitJob',
        'rpc.grpc.status_code': 0,
        'tensorguard.tenant': 'team-otel',
      });
      expect(rpc.map((s) => s.attributes['rpc.grpc.status_code'])).to.include(grpc.status.UNAUTHENTICATED);
      // Nothing from the credentials or the job document, in attributes or anywhere else sent.
      const sent = Buffer.concat(collector.traces).toString('latin1');
      for (const secret of [KEY, 'tg_wrong_key', 'otel-marker-job', 'otel-marker-request', 'fashion-mnist']) {
        expect(sent, secret).to.not.include(secret);
      }
      for (const s of rpc) {
        for (const [k, v] of Object.entries(s.attributes)) {
          expect(k).to.match(/^(rpc\.|tensorguard\.tenant$)/);
          expect(String(v)).to.not.include(KEY);
        }
      }
    } finally {
      c.close();
      expect(await server.stop()).to.equal(0);
      expect(server.logs()).to.include('"telemetry":true');
      collector.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
