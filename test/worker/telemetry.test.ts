// OpenTelemetry from the training programs: with OTEL_EXPORTER_OTLP_ENDPOINT set, the coordinator
// and each worker export one span per round phase (`round.sample`, `round.local`, ... on a worker;
// `round.aggregate`, `round.unmask`, `round.apply` on the coordinator) to a loopback OTLP/gRPC
// collector, tagged with the round (and worker index) only: no data, sizes or statistics.
// A worker's clipping time is its private batch size over its throughput: no span, metric or
// line may carry it, nor a span boundary from which it could be read.
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
      const workers = [0, 1].map((i) => startWorker(file, i, addr, env));
      procs.push(...workers);
      expect(await coord.exited).to.equal(0);
      for (const p of procs.slice(1)) expect(await p.exited).to.equal(0);

      const spans: Span[] = collector.traces.flatMap(decodeSpans);
      const count = (name: string) => spans.filter((s) => s.name === name).length;
      for (const phase of ['sample', 'local']) {
        expect(count(`round.${phase}`), phase).to.equal(2 * 3); // 2 workers × 3 rounds
      }
      // Phases whose duration or start reveals the clipping time have no span of their own.
      for (const phase of ['clip', 'noise', 'encode', 'mask', 'upload']) {
        expect(count(`round.${phase}`), phase).to.equal(0);
      }
      // Nothing a worker exports starts or ends inside its window 'local' (clip → the moment the
      // round's survivors are known): no boundary there from which the clip time could be read.
      for (const w of spans.filter((x) => x.name === 'round.local')) {
        const mine = spans.filter(
          (x) => x !== w && x.attributes.worker === w.attributes.worker && x.name.startsWith('round.'),
        );
        for (const x of mine) {
          // Span start times have millisecond granularity here (OpenTelemetry anchors them to
          // Date.now()): a boundary within 2 ms of the window's edges is the edge itself.
          const slack = 2_000_000n;
          const inside = (t: bigint) => t > w.startNs + slack && t < w.endNs - slack;
          expect(inside(x.startNs) || inside(x.endNs), `${x.name} inside round.local`).to.equal(false);
        }
      }
      // Workers' metric lines: per-phase seconds only of sample-independent phases and the window.
      for (const p of workers) {
        const lines = p.lines.filter((l) => l.type === 'metrics');
        expect(lines.length).to.equal(3);
        for (const l of lines) {
          expect(Object.keys(l).sort()).to.deep.equal(['bytes_sent', 'phase_seconds', 'round', 'type']);
          expect(Object.keys(l.phase_seconds as object).sort()).to.deep.equal([
            'encode',
            'local',
            'mask',
            'noise',
            'sample',
          ]);
        }
        // No line of a worker names a batch size, loss, norm or clipped fraction.
        for (const l of p.lines) {
          expect(JSON.stringify(l)).to.not.match(/batch|loss|norm|clipped|examples/i);
        }
      }
      for (const phase of ['aggregate', 'unmask', 'apply'])
        expect(count(`round.${phase}`), phase).to.equal(3);
      for (const s of spans.filter((x) => x.name.startsWith('round.'))) {
        expect(
          Object.keys(s.attributes).every((k) => k === 'round' || k === 'worker'),
          s.name,
        ).to.equal(true);
      }
      const indices = new Set(spans.filter((s) => s.name === 'round.local').map((s) => s.attributes.worker));
      expect([...indices].sort()).to.deep.equal([0, 1]);
    } finally {
      collector.close();
    }
  });
});
