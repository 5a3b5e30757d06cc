// A compromised coordinator that announces other privacy parameters than the job config's: every
// worker refuses the round, names the parameter, and sends nothing derived from its shard.
//
// The compromise is modelled without any hook in the coordinator: the workers dial a proxy here
// that forwards every call of secure-agg's aggregator service (tensorguard.v1.SecureAggregation)
// to the real coordinator process and rewrites its round announcements (RoundAnnouncement.training).
import * as grpc from '@grpc/grpc-js';
import { secureAggregation as pb, SecureAggregationService } from '@tensorguard/proto';
import { gaussianEvent, poissonSampledEvent, RdpAccountant } from '@tensorguard/dp';
import { expect } from 'chai';
import fs from 'node:fs';
import {
  address,
  killAll,
  startCoordinator,
  startWorker,
  tmpDir,
  writeConfig,
  type Proc,
} from './harness.js';

type Announcement = pb.RoundAnnouncement;
type Method = keyof typeof SecureAggregationService;

/**
 * A man in the middle of secure-agg's aggregator service: every call is forwarded as bytes to the
 * real coordinator, and every round announcement (AwaitRound's answer) is decoded, handed to
 * `tamper` and re-encoded before it reaches the worker.
 */
async function tamperingProxy(
  upstream: string,
  /** Sees (and may change) every round announcement before it reaches the worker. */
  tamper: (open: Announcement) => void,
): Promise<{ address: string; forwarded: Map<Method, number>; close: () => void }> {
  const client = new grpc.Client(upstream, grpc.credentials.createInsecure());
  const forwarded = new Map<Method, number>();
  const raw = (b: Buffer) => b;
  const definition: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {};
  const impl: grpc.UntypedServiceImplementation = {};
  for (const [m, def] of Object.entries(SecureAggregationService) as [Method, { path: string }][]) {
    definition[m] = {
      path: def.path,
      requestStream: false,
      responseStream: false,
      requestSerialize: raw,
      requestDeserialize: raw,
      responseSerialize: raw,
      responseDeserialize: raw,
    };
    impl[m] = (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      forwarded.set(m, (forwarded.get(m) ?? 0) + 1);
      client.makeUnaryRequest(
        def.path,
        raw,
        raw,
        call.request,
        new grpc.Metadata(),
        { deadline: Date.now() + 600_000 },
        (err, res) => {
          if (err || !res) return cb(err ?? { code: grpc.status.INTERNAL, details: 'no answer' });
          if (m !== 'awaitRound') return cb(null, res);
          const open = pb.RoundAnnouncement.decode(res);
          tamper(open);
          cb(null, Buffer.from(pb.RoundAnnouncement.encode(open).finish()));
        },
      );
    };
  }
  const server = new grpc.Server();
  server.addService(definition as grpc.ServiceDefinition, impl);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  return {
    address: `127.0.0.1:${port}`,
    forwarded,
    close: () => {
      server.forceShutdown();
      client.close();
    },
  };
}

describe('worker: a coordinator announcing other privacy parameters than the config', function () {
  this.timeout(180_000);

  // Each row: what the compromised coordinator changes, and the parameter every worker must name.
  const cases: [string, (o: Announcement) => void, string][] = [
    ['a zero noise share', (o) => (o.training!.noiseShareStd = 0), 'noiseShareStd'],
    ['a sampling rate of 1', (o) => (o.training!.samplingRate = 1), 'samplingRate'],
  ];
  for (const [what, tamper, parameter] of cases) {
    it(`${what}: every worker refuses the round naming ${parameter}, and no masked input is sent`, async () => {
      const dir = tmpDir('tg-announce-');
      const config = writeConfig(dir, { rounds: 2 });
      const procs: Proc[] = [];
      const coord = startCoordinator(config, { TENSORGUARD_JOIN_GRACE_MS: '500' });
      procs.push(coord);
      let proxy: Awaited<ReturnType<typeof tamperingProxy>> | undefined;
      try {
        proxy = await tamperingProxy(await address(coord), tamper);
        const ws = [0, 1, 2].map((i) => startWorker(config, i, proxy!.address));
        procs.push(...ws);
        const codes = await Promise.all(ws.map((w) => w.exited));
        // EXIT_FATAL (3): not restarted by its supervisor, the job is told why.
        expect(codes).to.deep.equal([3, 3, 3]);
        for (const w of ws) expect(w.lines.some((l) => l.type === 'fatal')).to.equal(true);
        for (const w of ws) {
          expect(w.stderr.join('')).to.match(
            new RegExp(
              `round 1 refused: the coordinator announced ${parameter} = .* but the job config gives`,
            ),
          );
        }
        // Refused before key setup: nothing, not even a public key, went to the coordinator.
        const after: Method[] = [
          'getModel',
          'advertiseKeys',
          'shareKeys',
          'submitMaskedInput',
          'attest',
          'unmask',
          'submitEncryptedInput',
        ];
        for (const m of after) expect(proxy.forwarded.get(m) ?? 0, m).to.equal(0);
        expect(proxy.forwarded.get('awaitRound'), 'the announcement went through the proxy').to.be.at.least(
          3,
        );
      } finally {
        proxy?.close();
        killAll(procs);
      }
    });
  }

  it('with privacy.colluders = 1 the reported ε is at least the ε of the honest workers’ noise alone (what is left when a colluder subtracts its share)', async () => {
    const dir = tmpDir('tg-collude-');
    const config = writeConfig(dir, {
      rounds: 5,
      privacy: {
        clipNorm: 1,
        noiseMultiplier: 1,
        delta: 1e-5,
        epsilonBudget: null,
        samplingRate: 0.2,
        colluders: 1,
      },
    });
    const procs: Proc[] = [];
    const coord = startCoordinator(config, { TENSORGUARD_JOIN_GRACE_MS: '500' });
    procs.push(coord);
    const announced: Announcement[] = [];
    let proxy: Awaited<ReturnType<typeof tamperingProxy>> | undefined;
    try {
      // No tampering: the proxy only records the noise share every worker was told to add (and,
      // having checked it against its config, added).
      proxy = await tamperingProxy(await address(coord), (o) => void announced.push(o));
      const ws = [0, 1, 2].map((i) => startWorker(config, i, proxy!.address));
      procs.push(...ws);
      const done = await coord.waitFor((l) => l.type === 'done', 120_000);
      expect(done.status).to.equal('succeeded');
      const report = JSON.parse(fs.readFileSync(done.privacy_report as string, 'utf8')) as {
        epsilon: number;
        colluders: number;
        releasedRounds: { round: number; survivors: number; shards: number[] }[];
      };
      expect(report.colluders).to.equal(1);
      // The honest noise of each released round: survivors − 1 shares of the announced std, in
      // units of the sensitivity Δ = C + √d/scale (integer units: × scale).
      const accountant = new RdpAccountant();
      for (const r of report.releasedRounds) {
        expect(r.shards, 'every shard in every round (no dropouts)').to.have.length(3);
        const open = announced.find((a) => a.round === r.round)!;
        const enc = open.training!.encoding!;
        const sensitivity = (1 + Math.sqrt(enc.dimension) / enc.scale) * enc.scale;
        const honestStd = open.training!.noiseShareStd * Math.sqrt(r.survivors - 1);
        accountant.compose(poissonSampledEvent(0.2, gaussianEvent(honestStd / sensitivity)));
      }
      const honest = accountant.epsilon(1e-5);
      expect(report.releasedRounds).to.have.length(5);
      expect(report.epsilon).to.be.at.least(honest * (1 - 1e-9));
    } finally {
      proxy?.close();
      killAll(procs);
    }
  });
});

// A coordinator that runs more rounds than the workers' config allows: here it simply runs
// another config (more rounds, no budget) while the workers hold the job's. Every worker counts
// the rounds it contributes to and ends at its limit, naming it (worker-ts/src/round-limit.ts).
describe('worker: a coordinator asking for more rounds than the job allows', function () {
  this.timeout(180_000);

  const cases: { what: string; worker: Record<string, unknown>; limit: number; source: string }[] = [
    { what: 'rounds', worker: { rounds: 3 }, limit: 3, source: '\\(rounds = 3\\)' },
    {
      // ε of the integer mechanism at q = 0.2, σ = 1, t = 2 honest shares: 3.49 after 2 rounds, 3.96 after 3.
      what: 'privacy.epsilonBudget',
      worker: { rounds: 5, privacy: { ...baseConfigPrivacy(), epsilonBudget: 3.7 } },
      limit: 2,
      source:
        '\\(privacy\\.epsilonBudget 3\\.7 at δ = 0\\.00001: 2 rounds at q = 0\\.2, σ = 1 with 2 honest shares each\\)',
    },
  ];
  for (const c of cases) {
    it(`by ${c.what}: every worker refuses round ${c.limit + 1}, naming its limit, and uploads only ${c.limit} masked inputs`, async () => {
      const dir = tmpDir('tg-round-limit-');
      const coordinatorConfig = writeConfig(dir, { rounds: 5 });
      const workerConfig = writeConfig(dir, c.worker);
      const procs: Proc[] = [];
      const coord = startCoordinator(coordinatorConfig, { TENSORGUARD_JOIN_GRACE_MS: '500' });
      procs.push(coord);
      let proxy: Awaited<ReturnType<typeof tamperingProxy>> | undefined;
      try {
        // No tampering: the proxy counts what each worker sends.
        proxy = await tamperingProxy(await address(coord), () => {});
        const ws = [0, 1, 2].map((i) => startWorker(workerConfig, i, proxy!.address));
        procs.push(...ws);
        const codes = await Promise.all(ws.map((w) => w.exited));
        // EXIT_FATAL (3): not restarted by its supervisor (a restart would count afresh).
        expect(codes).to.deep.equal([3, 3, 3]);
        for (const w of ws) {
          expect(w.lines.some((l) => l.type === 'fatal')).to.equal(true);
          const err = w.stderr.join('');
          expect(err).to.match(
            new RegExp(
              `round ${c.limit + 1} refused: this worker has contributed to ${c.limit} rounds, the most its job config allows ${c.source}`,
            ),
          );
        }
        expect(proxy.forwarded.get('submitMaskedInput'), 'masked inputs uploaded').to.equal(3 * c.limit);
      } finally {
        proxy?.close();
        killAll(procs);
      }
    });
  }
});

/** writeConfig's privacy block (harness.ts), to override one field of it. */
function baseConfigPrivacy(): Record<string, unknown> {
  return {
    clipNorm: 1,
    noiseMultiplier: 1,
    delta: 1e-5,
    epsilonBudget: null,
    accountant: 'rdp',
    samplingRate: 0.2,
  };
}
