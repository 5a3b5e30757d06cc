// Restarting `tensorguard serve` mid-job: the job (a real detached process of the local-process
// backend, like a Ray job it outlives the server) keeps running; the new server resumes following
// it from the stored log cursor, and a client resumes WatchJob from the last event id it got.
// Every event arrives exactly once, in order, across both servers.
import * as grpc from '@grpc/grpc-js';
import { trainingService as pb } from '@tensorguard/proto';
import { expect } from 'chai';
import path from 'node:path';
import { bearer, call, client, jobDocument, keyFile, sleep, startServer, tmpDir, watch } from './helpers.js';

const KEY = 'tg_restart_test_key_0123456789abcdef';

describe('TrainingService across a server restart', function () {
  this.timeout(120_000);

  for (const how of ['SIGTERM', 'SIGKILL'] as const) {
    it(`resumes WatchJob from the last event id with nothing lost or repeated (${how})`, async () => {
      const dir = tmpDir('restart');
      const args = [
        '--listen',
        '127.0.0.1:0',
        '--api-keys',
        keyFile(dir, [{ id: 'k', tenant: 't', key: KEY }]),
        '--db',
        path.join(dir, 'jobs.db'),
        '--backend',
        'local-process',
        '--local-round-ms',
        '150',
      ];
      const md = bearer(KEY);
      const s1 = await startServer(args);
      const c1 = client(s1.address);
      const { job } = await call(
        c1,
        c1.submitJob,
        {
          requestId: 'r1',
          spec: { document: jobDocument({ rounds: 14, evaluation: { everyRounds: 3 } }) },
          validateOnly: false,
        },
        md,
      );
      // Follow until round 4, then stop the server under the client.
      const first = await watch(c1, { jobId: job!.jobId, afterEventId: 0 }, md, (e, stream) => {
        if (e.roundProgress?.round === 4) {
          stream.removeAllListeners('data');
          void (how === 'SIGTERM' ? s1.stop() : s1.kill());
        }
      });
      c1.close();
      if (how === 'SIGTERM') expect(first.error?.code).to.equal(grpc.status.UNAVAILABLE);
      else
        expect(first.error?.code).to.be.oneOf([
          grpc.status.UNAVAILABLE,
          grpc.status.INTERNAL,
          grpc.status.CANCELLED,
        ]);
      const got = first.events.slice(0, first.events.findIndex((e) => e.roundProgress?.round === 4) + 1);
      // The job runs on while no server is up.
      await sleep(700);
      const s2 = await startServer(args);
      const c2 = client(s2.address);
      const rest = await watch(c2, { jobId: job!.jobId, afterEventId: got.at(-1)!.eventId }, md);
      expect(rest.error).to.equal(null);
      const all = [...got, ...rest.events];
      expect(all.map((e) => e.eventId)).to.deep.equal(all.map((_, i) => i + 1));
      expect(all.filter((e) => e.roundProgress).map((e) => e.roundProgress!.round)).to.deep.equal(
        Array.from({ length: 14 }, (_, i) => i + 1),
      );
      expect(all.filter((e) => e.evalMetrics).map((e) => e.evalMetrics!.round)).to.deep.equal([
        3, 6, 9, 12, 14,
      ]);
      expect(all.at(-1)!.stateChanged!.state).to.equal(pb.JobState.JOB_STATE_SUCCEEDED);
      // The full stream from the start, from the new server, is the same sequence.
      const replay = await watch(c2, { jobId: job!.jobId, afterEventId: 0 }, md);
      expect(replay.events.map((e) => [e.eventId, e.roundProgress?.round ?? null])).to.deep.equal(
        all.map((e) => [e.eventId, e.roundProgress?.round ?? null]),
      );
      const j = await call(c2, c2.getJob, { jobId: job!.jobId }, md);
      expect(j.job!.roundsCompleted).to.equal(14);
      c2.close();
      expect(await s2.stop()).to.equal(0);
    });
  }

  it('refuses a second server on the same database', async () => {
    const dir = tmpDir('lock');
    const args = [
      '--listen',
      '127.0.0.1:0',
      '--api-keys',
      keyFile(dir, [{ id: 'k', tenant: 't', key: KEY }]),
      '--db',
      path.join(dir, 'jobs.db'),
      '--backend',
      'local-process',
    ];
    const s1 = await startServer(args);
    try {
      let err: Error | null = null;
      await startServer(args).then(
        (s) => s.stop(),
        (e: Error) => (err = e),
      );
      expect(String(err)).to.include('is in use by another tensorguard serve process');
    } finally {
      await s1.stop();
    }
  });
});
