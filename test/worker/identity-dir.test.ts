// `worker.js --identity-dir`: the protocol of a TLS run (signed advertised keys, the Attest stage)
// over a plaintext loopback channel, which is what the multinode benchmark compares TLS with. The
// identities are the job's, made by ray-cluster's pki.py; a worker signing with another job's is
// caught by the others' signature checks.
import { expect } from 'chai';
import fs from 'node:fs';
import {
  address,
  jobIdentities,
  killAll,
  startCoordinator,
  startWorker,
  tmpDir,
  writeConfig,
  type Proc,
} from './harness.js';

/** Identity directories (ca.pem, cert.pem, key.pem) for workers 0..n-1 of one job (pki.py). */
function workerIdentities(job: string, workers: number): string[] {
  const ids = jobIdentities(job, workers);
  for (const unused of [ids.aggregator, ids.keyHolder]) fs.rmSync(unused, { recursive: true, force: true });
  return ids.workers;
}

describe('worker --identity-dir: identity signatures over a plaintext channel', function () {
  this.timeout(240_000);
  const dirs: string[] = [];
  after(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

  it("a job completes with every worker signing; a worker with another job's identity is refused by the others' checks", async () => {
    const dir = tmpDir('tg-identity-dir-');
    const ids = workerIdentities('job-identity', 3);
    const [strangerId] = workerIdentities('job-identity-other', 1);
    dirs.push(dir, ...ids, strangerId!);
    const config = writeConfig(dir, { rounds: 2 });
    const procs: Proc[] = [];
    try {
      const coord = startCoordinator(config, { TENSORGUARD_JOIN_GRACE_MS: '500' });
      procs.push(coord);
      const addr = await address(coord);
      const ws = [0, 1, 2].map((i) => startWorker(config, i, addr, {}, ['--identity-dir', ids[i]!]));
      procs.push(...ws);
      const done = await coord.waitFor((l) => l.type === 'done', 180_000);
      expect(done.status, JSON.stringify(done)).to.equal('succeeded');
      expect(done.rounds).to.equal(2);
      expect(await Promise.all(ws.map((w) => w.exited))).to.deep.equal([0, 0, 0]);
    } finally {
      killAll(procs);
    }

    // Worker 2 signs with another job's certificate (right name, wrong CA): workers 0 and 1 find
    // its roster entry unsigned by this job's identity and abandon the round.
    const dir2 = tmpDir('tg-identity-dir-');
    dirs.push(dir2);
    const config2 = writeConfig(dir2, { rounds: 2 });
    const procs2: Proc[] = [];
    try {
      const coord = startCoordinator(config2, { TENSORGUARD_JOIN_GRACE_MS: '500' });
      procs2.push(coord);
      const addr = await address(coord);
      const idOf = (i: number) => (i === 2 ? strangerId! : ids[i]!);
      const ws = [0, 1, 2].map((i) => startWorker(config2, i, addr, {}, ['--identity-dir', idOf(i)]));
      procs2.push(...ws);
      const refused =
        /the roster's keys for index 2 \(worker-2\) are not signed by that member's job identity/;
      const deadline = Date.now() + 180_000;
      while (!refused.test(ws[0]!.stderr.join('')) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 200));
      expect(ws[0]!.stderr.join('')).to.match(refused);
      expect(coord.lines.some((l) => l.type === 'metrics')).to.equal(false);
    } finally {
      killAll(procs2);
    }
  });

  it('refuses --identity-dir together with --tls-dir, naming both', async () => {
    const dir = tmpDir('tg-identity-dir-');
    dirs.push(dir);
    const [id] = workerIdentities('job-identity-both', 1);
    dirs.push(id!);
    const w = startWorker(writeConfig(dir, {}), 0, '127.0.0.1:1', {}, [
      '--tls-dir',
      id!,
      '--identity-dir',
      id!,
    ]);
    try {
      expect(await w.exited).to.equal(1);
      expect(w.stderr.join('')).to.contain(
        '--tls-dir already gives the job identity its signatures use; pass --identity-dir only without --tls-dir',
      );
    } finally {
      killAll([w]);
    }
  });
});
