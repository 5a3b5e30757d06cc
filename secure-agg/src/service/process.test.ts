// Real processes: the aggregator started by its command, one worker per round as a child process
// killed with SIGKILL in each stage, and three healthy workers over loopback.
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { encodeIntegers, STAGES, type ActiveStage } from '../index.js';
import { SecureAggClient } from './index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const pkg = path.resolve(here, '..', '..');

/** Spawns a TypeScript entry point without a build; collects its JSON stdout lines. */
function start(script: string, args: string[]) {
  const child = spawn(
    process.execPath,
    ['--conditions=tensorguard-source', '--import', 'tsx', script, ...args],
    {
      cwd: pkg,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const lines: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  readline.createInterface({ input: child.stdout! }).on('line', (l) => {
    try {
      lines.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      return;
    }
    waiters.splice(0).forEach((w) => w());
  });
  const next = async (pred: (l: Record<string, unknown>) => boolean, timeoutMs = 30_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = lines.find(pred);
      if (hit) {
        lines.splice(lines.indexOf(hit), 1);
        return hit;
      }
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for output; stderr: ${stderr.slice(-2000)}`);
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 200);
      });
    }
  };
  return { child, next, stderr: () => stderr };
}

function exited(child: ChildProcess): Promise<NodeJS.Signals | number | null> {
  if (child.exitCode !== null || child.signalCode !== null)
    return Promise.resolve(child.signalCode ?? child.exitCode);
  return new Promise((r) => child.once('exit', (code, sig) => r(sig ?? code)));
}

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
