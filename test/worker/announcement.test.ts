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
import { expect } from 'chai';
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
        expect(codes).to.deep.equal([1, 1, 1]);
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
});
