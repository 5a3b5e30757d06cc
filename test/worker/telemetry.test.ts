// OpenTelemetry from the training programs: with OTEL_EXPORTER_OTLP_ENDPOINT set, the coordinator
// and each worker export one span per round phase (`round.sample`, `round.clip`, ... on a worker;
// `round.aggregate`, `round.unmask`, `round.apply` on the coordinator) to a loopback OTLP/gRPC
// collector, tagged with the round (and worker index) only: no data, sizes or statistics.
import { expect } from 'chai';
import { decodeSpans, startCollector, type Span } from '../otlp-collector.js';
import {
  address,
  killAll,
  startCoordinator,
  startWorker,
  tmpDir,
  writeConfig,
  type Proc,
} from './harness.js';

describe('worker + coordinator: OpenTelemetry spans per round phase', function () {
  this.timeout(180_000);
  const procs: Proc[] = [];
  afterEach(() => killAll(procs.splice(0)));

  it('exports a span for every phase of every round, attributed by round and worker only', async () => {
    const collector = await startCollector();
    try {
      const env = {
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collector.port}`,
        OTEL_BSP_SCHEDULE_DELAY: '200',
        OTEL_METRIC_EXPORT_INTERVAL: '60000',
      };
      const file = writeConfig(tmpDir('tg-otel-'), {
        workers: { count: 2 },
        secureAggregation: { mode: 'masking', threshold: 2 },
        rounds: 3,
      });
      const coord = startCoordinator(file, env);
      procs.push(coord);
      const addr = await address(coord);
      for (const i of [0, 1]) procs.push(startWorker(file, i, addr, env));
      expect(await coord.exited).to.equal(0);
      for (const p of procs.slice(1)) expect(await p.exited).to.equal(0);

      const spans: Span[] = collector.traces.flatMap(decodeSpans);
      const count = (name: string) => spans.filter((s) => s.name === name).length;
      for (const phase of ['sample', 'clip', 'noise', 'encode', 'mask', 'upload']) {
        expect(count(`round.${phase}`), phase).to.equal(2 * 3); // 2 workers × 3 rounds
      }
      for (const phase of ['aggregate', 'unmask', 'apply'])
        expect(count(`round.${phase}`), phase).to.equal(3);
      for (const s of spans.filter((x) => x.name.startsWith('round.'))) {
        expect(
          Object.keys(s.attributes).every((k) => k === 'round' || k === 'worker'),
          s.name,
        ).to.equal(true);
      }
      const workers = new Set(spans.filter((s) => s.name === 'round.clip').map((s) => s.attributes.worker));
      expect([...workers].sort()).to.deep.equal([0, 1]);
    } finally {
      collector.close();
    }
  });
});
