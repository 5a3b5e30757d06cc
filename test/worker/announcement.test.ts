// A compromised coordinator that announces other privacy parameters than the job config's: every
// worker refuses the round, names the parameter, and sends nothing derived from its shard.
//
// The compromise is modelled without any hook in the coordinator: the workers dial a proxy here
// that forwards every call to the real coordinator process and rewrites its round announcements.
import {
  ROUND_METHODS,
  RoundServiceClient,
  startRoundServer,
  type RoundHandler,
  type RoundMethod,
} from '@tensorguard/worker';
import { gaussianEvent, poissonSampledEvent, RdpAccountant } from '@tensorguard/dp';
import { expect } from 'chai';
import fs from 'node:fs';
import type { Server } from '@grpc/grpc-js';
import {
  address,
  killAll,
  startCoordinator,
  startWorker,
  tmpDir,
  writeConfig,
  type Proc,
} from './harness.js';

type Announcement = Record<string, unknown> & { kind: string };

async function tamperingProxy(
  upstream: string,
  /** Sees (and may change) every round announcement before it reaches the worker. */
  tamper: (open: Announcement) => void,
): Promise<{ server: Server; address: string; forwarded: Map<string, number>; close: () => void }> {
  const client = new RoundServiceClient(upstream);
  const forwarded = new Map<string, number>();
  const handlers = Object.fromEntries(
    ROUND_METHODS.map((m): [RoundMethod, RoundHandler] => [
      m,
      async (req) => {
        forwarded.set(m, (forwarded.get(m) ?? 0) + 1);
        const res = await client.call<Announcement>(m, req, 600_000);
        if (m === 'NextRound' && res.kind === 'round') tamper(res);
        return res;
      },
    ]),
  ) as Record<RoundMethod, RoundHandler>;
  const { server, address: addr } = await startRoundServer(handlers, '127.0.0.1', 0);
  return {
    server,
    address: addr,
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
    ['a zero noise share', (o) => (o.noiseShareStd = 0), 'noiseShareStd'],
    ['a sampling rate of 1', (o) => (o.samplingRate = 1), 'samplingRate'],
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
        for (const m of ['AdvertiseKeys', 'ShareKeys', 'MaskedInput', 'Unmask', 'EncryptedInput'])
          expect(proxy.forwarded.get(m) ?? 0, m).to.equal(0);
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
        const open = announced.find((a) => (a.params as { round: number }).round === r.round)!;
        const enc = open.encoding as { scale: number; dimension: number };
        const sensitivity = (1 + Math.sqrt(enc.dimension) / enc.scale) * enc.scale;
        const honestStd = (open.noiseShareStd as number) * Math.sqrt(r.survivors - 1);
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
