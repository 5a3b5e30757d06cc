// OpenTelemetry export of `tensorguard serve` (OTEL_EXPORTER_OTLP_ENDPOINT, OTLP/gRPC): a small
// OTLP trace collector on loopback (a grpc-js server implementing
// opentelemetry.proto.collector.trace.v1.TraceService/Export, decoding the protobuf wire format
// itself: the .proto files are not shipped in node_modules) receives the server span of each
// TrainingService call, and nothing secret or job-specific is in what it receives.
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { decodeSpans, startCollector, type Span } from '../otlp-collector.js';
import { bearer, call, client, jobDocument, keyFile, sleep, startServer, tmpDir } from './helpers.js';

const KEY = 'tg_otel_test_key_SECRET_0123456789abc';

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
