// Real processes: the aggregator started by its command, one worker per round as a child process
// killed with SIGKILL in each stage, and three healthy workers over loopback.
import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encodeIntegers, STAGES, type ActiveStage } from '../index.js';
import { SecureAggClient } from './index.js';
import { exited, pkg, start } from './testing/processes.js';

describe('service (real processes)', function () {
  this.timeout(120_000);
  let dir: string;
  let agg: ReturnType<typeof start>;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-agg-'));
    fs.writeFileSync(
      path.join(dir, 'aggregator.json'),
      JSON.stringify({
        vectorLength: 3,
        bits: 32,
        minMembers: 4,
        rounds: 4,
        printSums: true,
        logLevel: 'warn',
        deadlinesMs: { ADVERTISE_KEYS: 2500, SHARE_KEYS: 2500, MASKED_INPUT: 2500, UNMASK: 2500 },
      }),
    );
    agg = start(path.join(pkg, 'src', 'bin', 'aggregator.ts'), [
      '--config',
      path.join(dir, 'aggregator.json'),
    ]);
  });

  after(async () => {
    agg.child.kill('SIGTERM');
    await exited(agg.child);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('completes a round in every stage in which a worker is killed with SIGKILL, with the exact sum', async () => {
    const { port } = (await agg.next((l) => l.event === 'listening')) as { port: number };
    const address = `127.0.0.1:${port}`;
    const healthy = [0, 1, 2].map((i) => new SecureAggClient({ address, workerId: `h${i}` }));
    try {
      for (const [r, stage] of STAGES.entries()) {
        const victim = start(path.join(pkg, 'src', 'service', 'testing', 'worker-process.ts'), [
          JSON.stringify({
            address,
            workerId: `victim-${stage}`,
            values: [1000, 2000, 3000],
            bits: 32,
            minRound: r,
            dieAt: stage as ActiveStage,
          }),
        ]);
        const work = healthy.map(async (c, i) => {
          await c.join();
          const open = await c.awaitRound(r, 60_000);
          return c.contribute(open, encodeIntegers(32, [i + 1, -(i + 1), r]));
        });
        await victim.next((l) => l.at === stage);
        victim.child.kill('SIGKILL');
        expect(await exited(victim.child)).to.equal('SIGKILL');
        const outcomes = await Promise.all(work);
        const line = (await agg.next((l) => l.event === 'round' || l.event === 'abort')) as {
          event: string;
          round: number;
          survivors: string[];
          sum: number[];
        };
        expect(line.event, JSON.stringify(line)).to.equal('round');
        expect(line.round).to.equal(r);
        const victimIn = stage === 'UNMASK'; // it sent its masked input before it died
        expect(line.survivors).to.deep.equal(
          victimIn ? ['h0', 'h1', 'h2', `victim-${stage}`] : ['h0', 'h1', 'h2'],
        );
        expect(line.sum).to.deep.equal(victimIn ? [1006, 1994, 3000 + 3 * r] : [6, -6, 3 * r]);
        expect(outcomes.every((o) => o.completed)).to.equal(true);
      }
    } finally {
      healthy.forEach((c) => c.close());
    }
  });
});
