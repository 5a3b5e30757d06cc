// TrainingService on the real Ray backend: `tensorguard serve` submits real training jobs (an MLP
// on a few hundred Fashion-MNIST records, 2 DP workers with secure aggregation, the worker-ts
// programs under Ray actors) and turns the entrypoint's progress/result lines into events.
// First on the private Ray head that serve starts and stops; then on a head the test owns, so
// that jobs outlive a serve restart (re-attached, nothing lost or repeated) and can be cancelled.
// About 3 minutes (two Ray heads, three jobs). Alone: `cd test && npx mocha api/ray-backend.test.ts`.
import * as grpc from '@grpc/grpc-js';
import { trainingService as pb } from '@tensorguard/proto';
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { LocalHead, type RayJobsClient } from '../../driver/src/ray/index.js';
import { verifyReport } from '../../driver/src/api/jobs/privacy-report.js';
import {
  bearer,
  call,
  client,
  keyFile,
  root,
  sleep,
  startServer,
  tmpDir,
  watch,
  type ServerProcess,
} from './helpers.js';

const KEY = 'tg_ray_backend_test_key_0123456789ab';
const md = bearer(KEY);

/** A real, small job: ~300 training records over 2 workers, evaluation on 200. */
function rayJob(name: string, rounds: number): Record<string, unknown> {
  return {
    name,
    rounds,
    model: { kind: 'mlp', hidden: [16] },
    dataset: { format: 'idx', preset: 'fashion-mnist', trainExamples: 300, testExamples: 200 },
    workers: { count: 2, cpusPerWorker: 0.5, maxRestarts: 1 },
    coordinator: { cpus: 0.5 },
    // q from the expected batch size (resolved by the server as `train` does): 30 / 300 = 0.1.
    privacy: { clipNorm: 1, noiseMultiplier: 1, delta: 1e-5, expectedBatchSize: 30, epsilonBudget: 100 },
    secureAggregation: { mode: 'masking', threshold: 2 },
    optimizer: { kind: 'sgd', learningRate: 0.1 },
    evaluation: { everyRounds: 2 },
    // checkpoint.dir is the server's to choose: <state-root>/<tenant>/jobs/<job id>/checkpoints.
    checkpoint: { everyRounds: 100 },
  };
}

function serveArgs(dir: string): string[] {
  return [
    '--listen',
    '127.0.0.1:0',
    '--api-keys',
    keyFile(dir, [{ id: 'k', tenant: 't', key: KEY }]),
    '--db',
    path.join(dir, 'jobs.db'),
    '--state-root',
    path.join(dir, 'state'),
    '--data-root',
    path.join(dir, 'data'),
  ];
}

const processGroupAlive = (pgid: number) => {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Checks one job's complete event stream: ids 1..n, rounds 1..N once each, ends SUCCEEDED. */
function expectCompleteStream(events: pb.JobEvent[], rounds: number): void {
  expect(events.map((e) => e.eventId)).to.deep.equal(events.map((_, i) => i + 1));
  const states = events.filter((e) => e.stateChanged).map((e) => e.stateChanged!.state);
  expect(states, JSON.stringify(events.map((e) => e.stateChanged?.message))).to.deep.equal([
    pb.JobState.JOB_STATE_QUEUED,
    pb.JobState.JOB_STATE_RUNNING,
    pb.JobState.JOB_STATE_SUCCEEDED,
  ]);
  const progress = events.filter((e) => e.roundProgress).map((e) => e.roundProgress!);
  expect(progress.map((p) => p.round)).to.deep.equal(Array.from({ length: rounds }, (_, i) => i + 1));
  expect(progress.every((p) => p.roundsTotal === rounds)).to.equal(true);
  const eps = progress.map((p) => p.privacySpent!.epsilon);
  for (let i = 1; i < eps.length; i++) expect(eps[i]).to.be.greaterThan(eps[i - 1]!);
  expect(eps[0]).to.be.greaterThan(0);
  const evals = events.filter((e) => e.evalMetrics).map((e) => e.evalMetrics!);
  expect(evals.map((e) => e.round)).to.include(2);
  for (const e of evals) expect(e.accuracy).to.be.within(0, 1);
}

describe('TrainingService on the Ray backend (real Ray, real training)', function () {
  this.timeout(400_000);
  let dir: string;
  // Every server and folder a test makes is cleaned up even when an assertion fails mid-test.
  const servers: ServerProcess[] = [];
  const dirs: string[] = [];
  const serve = async (...a: Parameters<typeof startServer>): Promise<ServerProcess> => {
    const s = await startServer(...a);
    servers.push(s);
    return s;
  };
  const scratch = (prefix: string): string => {
    const d = tmpDir(prefix);
    dirs.push(d);
    return d;
  };
  before(() => {
    dir = scratch('ray');
  });
  afterEach(async () => {
    for (const s of servers.splice(0)) {
      if (s.child.exitCode === null && s.child.signalCode === null) await s.kill();
    }
  });
  after(() => {
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  it('runs a job on the private head serve starts: events, ε, eval metrics, a signed report', async () => {
    const server = await serve(serveArgs(dir), {}, 180_000);
    const c = client(server.address);
    let pgid = 0;
    try {
      // The start-up log line (pino, written asynchronously) names the head's process group.
      const headRe = /"rayDashboard":"(http:[^"]+)","rayHeadPgid":(\d+)/;
      for (let i = 0; i < 50 && !headRe.test(server.logs()); i++) await sleep(100);
      const head = headRe.exec(server.logs());
      expect(head, server.logs()).to.not.equal(null);
      pgid = Number(head![2]);
      const { job } = await call(
        c,
        c.submitJob,
        { requestId: 'private-1', spec: { document: rayJob('private', 4) }, validateOnly: false },
        md,
        60_000,
      );
      expect(job!.backendJobId).to.equal(job!.jobId);
      // The stored spec is the resolved one: q from the expected batch size.
      const privacy = (job!.spec as { privacy: Record<string, unknown> }).privacy;
      expect(privacy.samplingRate).to.equal(0.1);
      expect(privacy).to.not.have.property('expectedBatchSize');

      const w = await watch(c, { jobId: job!.jobId, afterEventId: 0 }, md);
      expect(w.error, server.logs()).to.equal(null);
      expectCompleteStream(w.events, 4);

      const got = await call(c, c.getJob, { jobId: job!.jobId }, md);
      expect(got.job!.state).to.equal(pb.JobState.JOB_STATE_SUCCEEDED);
      expect(got.job!.roundsCompleted).to.equal(4);
      const { report } = await call(c, c.getPrivacyReport, { jobId: job!.jobId }, md);
      const signed = verifyReport(report!, server.signingKeyId);
      expect(signed.job_id).to.equal(job!.jobId);
      expect(report!.epsilon).to.equal(got.job!.privacySpent!.epsilon);
      expect(report!.parameters!.noiseMultiplier).to.equal(1);
      expect(report!.parameters!.samplingRate).to.equal(0.1);
      expect(report!.roundsCompleted).to.equal(4);
      expect(fs.existsSync(path.join(dir, 'state', 't', 'jobs', job!.jobId, 'checkpoints'))).to.equal(true);
    } finally {
      c.close();
      expect(await server.stop()).to.equal(0);
    }
    // serve stopped its head.
    expect(processGroupAlive(pgid)).to.equal(false);
  });

  describe('on a Ray cluster that outlives the server (--address)', () => {
    let head: LocalHead;
    let env: NodeJS.ProcessEnv;
    let ray: RayJobsClient;
    before(async () => {
      head = await LocalHead.start({ root, numCpus: 4 });
      ray = head.client();
      env = {
        RAY_ADDRESS: head.info.dashboardUrl,
        RAY_AUTH_TOKEN: head.info.token,
        // The python with tensorguard_ray on this cluster's nodes (a given cluster's own setup).
        TENSORGUARD_RAY_PYTHON: path.join(root, '.venv', 'bin', 'python'),
      };
    });
    after(async () => {
      await head?.close();
    });

    it('re-attaches running jobs after a restart (SIGKILL): every event once, in order', async () => {
      const sub = scratch('ray-restart');
      const args = serveArgs(sub);
      const s1 = await serve(args, env);
      const c1 = client(s1.address);
      const { job } = await call(
        c1,
        c1.submitJob,
        { requestId: 'restart-1', spec: { document: rayJob('restarted', 8) }, validateOnly: false },
        md,
        60_000,
      );
      // Retrying the same request returns the same job; Ray has one job with that id.
      const again = await call(
        c1,
        c1.submitJob,
        { requestId: 'restart-1', spec: { document: rayJob('restarted', 8) }, validateOnly: false },
        md,
        60_000,
      );
      expect(again.job!.jobId).to.equal(job!.jobId);
      const first = await watch(c1, { jobId: job!.jobId, afterEventId: 0 }, md, (e, stream) => {
        if (e.roundProgress?.round === 2) {
          stream.removeAllListeners('data');
          void s1.kill();
        }
      });
      c1.close();
      expect(first.error?.code, JSON.stringify(first.events) + s1.logs().slice(-3000)).to.be.oneOf([
        grpc.status.UNAVAILABLE,
        grpc.status.INTERNAL,
        grpc.status.CANCELLED,
      ]);
      const got = first.events.slice(0, first.events.findIndex((e) => e.roundProgress?.round === 2) + 1);
      // The job runs on in Ray while no server is up.
      expect((await ray.status(job!.jobId)).status).to.equal('RUNNING');
      await sleep(1000);

      const s2 = await serve(args, env);
      const c2 = client(s2.address);
      try {
        const rest = await watch(c2, { jobId: job!.jobId, afterEventId: got.at(-1)!.eventId }, md);
        expect(rest.error, s2.logs()).to.equal(null);
        const all = [...got, ...rest.events];
        expectCompleteStream(all, 8);
        const replay = await watch(c2, { jobId: job!.jobId, afterEventId: 0 }, md);
        expect(replay.events.map((e) => e.eventId)).to.deep.equal(all.map((e) => e.eventId));
        // The job's last event comes before Ray marks it ended: the entrypoint still waits for
        // the last metrics report and removes its actors.
        let status = (await ray.status(job!.jobId)).status;
        for (let i = 0; i < 120 && status === 'RUNNING'; i++) {
          await sleep(500);
          status = (await ray.status(job!.jobId)).status;
        }
        expect(status).to.equal('SUCCEEDED');
        expect((await ray.list()).filter((j) => j.submission_id === job!.jobId)).to.have.length(1);
      } finally {
        c2.close();
        expect(await s2.stop()).to.equal(0);
      }
    });

    it('CancelJob stops the Ray job; the server leaves a given cluster running', async () => {
      const sub = scratch('ray-cancel');
      const server: ServerProcess = await serve(serveArgs(sub), env);
      // Rounds of this small job take milliseconds: enough of them that it is still running when
      // the cancellation arrives (no ε budget, tests only; σ high so ε stays small anyway).
      const longJob = rayJob('cancelled', 100_000);
      Object.assign(longJob.privacy as object, { noiseMultiplier: 10, epsilonBudget: null });
      longJob.evaluation = { everyRounds: 10_000 };
      const c = client(server.address);
      try {
        const { job } = await call(
          c,
          c.submitJob,
          { requestId: 'cancel-1', spec: { document: longJob }, validateOnly: false },
          md,
          60_000,
        );
        let cancelAt = 0;
        const w = await watch(c, { jobId: job!.jobId, afterEventId: 0 }, md, (e) => {
          if (e.roundProgress?.round === 1) {
            cancelAt = Date.now();
            void call(c, c.cancelJob, { jobId: job!.jobId, reason: 'test' }, md, 30_000);
          }
        });
        expect(w.error).to.equal(null);
        expect(w.events.at(-1)!.stateChanged).to.deep.include({
          state: pb.JobState.JOB_STATE_CANCELLED,
          message: 'test',
        });
        for (let i = 0; i < 60 && (await ray.status(job!.jobId)).status !== 'STOPPED'; i++) await sleep(500);
        const d = await ray.status(job!.jobId);
        const cancelLog = server
          .logs()
          .split('\n')
          .filter((l) => l.includes('CancelJob'));
        const progress = (await ray.logs(job!.jobId))
          .split('\n')
          .filter((l) => l.startsWith('{"type"')).length;
        expect(d.status, JSON.stringify({ d, cancelLog, progress, cancelAt })).to.equal('STOPPED');
      } finally {
        c.close();
        expect(await server.stop()).to.equal(0);
      }
      expect(await ray.aliveNodes()).to.equal(1);
    });

    it('a job the cluster cannot place yet waits QUEUED with the reason, and can be cancelled there', async () => {
      const sub = scratch('ray-queued');
      const server: ServerProcess = await serve(serveArgs(sub), env);
      const c = client(server.address);
      try {
        const big = { ...rayJob('too-big', 2), workers: { count: 2, cpusPerWorker: 64 } };
        const { job } = await call(
          c,
          c.submitJob,
          { requestId: 'queued-1', spec: { document: big }, validateOnly: false },
          md,
          60_000,
        );
        let got = await call(c, c.getJob, { jobId: job!.jobId }, md);
        for (let i = 0; i < 120 && !got.job!.message.includes('waiting for'); i++) {
          await sleep(500);
          got = await call(c, c.getJob, { jobId: job!.jobId }, md);
        }
        expect(got.job!.state, server.logs().slice(-2000)).to.equal(pb.JobState.JOB_STATE_QUEUED);
        expect(got.job!.message).to.match(/^waiting for the cluster's resources: it needs 2 worker bundles/);
        expect(got.job!.message).to.match(/the cluster has CPU 4/);
        // The API's jobs wait without a placement limit (TENSORGUARD_PLACEMENT_TIMEOUT_S = 0).
        await sleep(5000);
        expect((await call(c, c.getJob, { jobId: job!.jobId }, md)).job!.state).to.equal(
          pb.JobState.JOB_STATE_QUEUED,
        );
        await call(c, c.cancelJob, { jobId: job!.jobId, reason: 'too big' }, md, 30_000);
        expect((await call(c, c.getJob, { jobId: job!.jobId }, md)).job!.state).to.equal(
          pb.JobState.JOB_STATE_CANCELLED,
        );
      } finally {
        c.close();
        expect(await server.stop()).to.equal(0);
      }
    });
  });
});
