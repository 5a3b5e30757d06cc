// `tensorguard train` end to end on real local Ray clusters, with the contract's fixture Node
// programs in place of the real coordinator and worker (see harness.ts).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { LocalHead } from '@tensorguard/driver';
import { cli, fixtureEnv, processGroupAlive, root, until, writeSpec } from './harness.js';

describe('ray: tensorguard train end to end', function () {
  this.timeout(240_000);
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-ray-it-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('runs a 3-worker job on a private head it starts and stops, reporting ε and the checkpoint', async () => {
    const run = cli(['train', writeSpec(dir, 'e2e', 6), '--json'], fixtureEnv());
    const code = await run.done;
    expect(code, run.stderr).to.equal(0);
    const result = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    expect(result).to.include({ type: 'result', status: 'succeeded', rounds: 6, epsilon: 1.5, delta: 1e-5 });
    expect(result.checkpoint).to.equal(path.join(dir, 'ckpt', 'round-6', 'model.safetensors'));
    expect(fs.existsSync(result.checkpoint as string)).to.equal(true);
    expect(run.stderr).to.match(/round 6\/6 · ε 1\.500 of 8 · eval acc 0\.700 · [\d.]+ s\/round · ETA 0s/);
    // The private head is gone: its dashboard URL no longer answers and its temp dir is removed.
    const url = /Ray dashboard: (http:\/\/\S+)/.exec(run.stderr)![1]!;
    const up = await fetch(`${url}/api/version`).then(
      () => true,
      () => false,
    );
    expect(up).to.equal(false);
    expect(
      fs.readdirSync('/tmp').filter((d) => d.startsWith('tg-ray-') && run.stderr.includes(d)),
    ).to.deep.equal([]);
  });

  describe('on a head that outlives the driver', () => {
    let head: LocalHead;
    let env: NodeJS.ProcessEnv;
    before(async () => {
      head = await LocalHead.start({ root, numCpus: 4 });
      env = { ...fixtureEnv(400), RAY_AUTH_TOKEN: head.info.token, RAY_ADDRESS: head.info.dashboardUrl };
    });
    after(async () => {
      await head.close();
      expect(processGroupAlive(head.info.pgid)).to.equal(false);
    });

    it('keeps the job running when the driver is killed, and `status` reattaches', async () => {
      const run = cli(['train', writeSpec(dir, 'orphaned', 14)], env);
      const id = await until('the job id', () => /submitted job (\S+)/.exec(run.stderr)?.[1]);
      await until('round 2', () => /round [2-9]\d*\/14/.test(run.stderr) || undefined);
      run.child.kill('SIGKILL');
      await run.done;

      const mid = cli(['status', id, '--json'], env);
      expect(await mid.done, mid.stderr).to.equal(0);
      const s1 = JSON.parse(mid.stdout) as { status: string; progress: { round: number } | null };
      expect(s1.status).to.equal('RUNNING');
      expect(s1.progress?.round).to.be.at.least(2);

      const final = await until(
        'the job to finish',
        async () => {
          const st = cli(['status', id, '--json'], env);
          await st.done;
          const s = JSON.parse(st.stdout) as { status: string; result: Record<string, unknown> | null };
          return s.status === 'SUCCEEDED' ? s : undefined;
        },
        120_000,
      );
      expect(final.result).to.include({ status: 'succeeded', rounds: 14, epsilon: 3.5 });

      const human = cli(['status', id], env);
      await human.done;
      expect(human.stdout).to.match(new RegExp(`^job ${id}: SUCCEEDED`));
      expect(human.stdout).to.include('checkpoint: ');

      const logs = cli(['logs', id], env);
      expect(await logs.done).to.equal(0);
      expect(logs.stdout).to.match(/fixture worker 2 pid \d+ threads=1 cuda=\[\] role=worker/);
      const list = cli(['list', '--json'], env);
      await list.done;
      expect(JSON.parse(list.stdout)).to.deep.include({
        job_id: id,
        status: 'SUCCEEDED',
        name: 'orphaned',
        start_time: (JSON.parse(list.stdout) as { job_id: string; start_time: number }[]).find(
          (j) => j.job_id === id,
        )!.start_time,
        end_time: (JSON.parse(list.stdout) as { job_id: string; end_time: number }[]).find(
          (j) => j.job_id === id,
        )!.end_time,
      });
    });

    it('Ctrl-C stops the job cleanly; `stop` and `logs -f` work on a detached job', async () => {
      const run = cli(['train', writeSpec(dir, 'interrupted', 100)], env);
      const id = await until('the job id', () => /submitted job (\S+)/.exec(run.stderr)?.[1]);
      await until('round 1', () => /round \d+\/100/.test(run.stderr) || undefined);
      run.child.kill('SIGINT');
      expect(await run.done, run.stderr).to.equal(130);
      expect(run.stderr).to.match(new RegExp(`job ${id}: STOPPED`));

      const det = cli(['train', writeSpec(dir, 'detached', 100), '--detach', '--json'], env);
      expect(await det.done, det.stderr).to.equal(0);
      const { job_id: did } = JSON.parse(det.stdout) as { job_id: string };
      const follow = cli(['logs', did, '-f'], env);
      await until('followed logs', () => /"type":"progress"/.test(follow.stdout) || undefined);
      const stop = cli(['stop', did], env);
      expect(await stop.done, stop.stderr).to.equal(0);
      expect(stop.stdout).to.equal(`job ${did}: stop requested, now STOPPED\n`);
      expect(await follow.done).to.equal(0); // the tail ends with the job
    });
  });
});
