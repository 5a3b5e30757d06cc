// Load on the TrainingService over loopback: a real `tensorguard serve` process (built, from
// driver/dist) with the in-process simulated backend, so that the API server is what is
// measured; 200 concurrent WatchJob streams, 50 submissions per second and 50 GetJob calls per
// second for a bounded time. Every stream's event ids are checked for gaps and compared with
// the job's last event id at the end: events_dropped counts anything missing.
import * as grpc from '@grpc/grpc-js';
import { type trainingService as pb, TrainingServiceClient } from '@tensorguard/proto';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Benchmark, Row } from '../types.js';

const KEY = `tg_bench_${crypto.randomBytes(16).toString('hex')}`;

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

function doc(rounds: number, name: string) {
  return {
    name,
    rounds,
    model: { kind: 'mlp', hidden: [16] },
    dataset: { format: 'idx', preset: 'fashion-mnist' },
    workers: { count: 2 },
    privacy: { clipNorm: 1, noiseMultiplier: 1.1, delta: 1e-5, samplingRate: 0.01, epsilonBudget: null },
    secureAggregation: { mode: 'masking', threshold: 2 },
    optimizer: { kind: 'sgd', learningRate: 0.1 },
    evaluation: { everyRounds: 5 },
  };
}

/**
 * A 'pld' job refused for its budget: the refusal names the continuous Gaussian's PLD over its
 * 400 rounds as a reference, seconds of CPU per call (σ calibration and the budget itself use the
 * rigorous RDP bound under both accountants, milliseconds).
 */
function pldDoc(name: string) {
  const d = doc(400, name);
  return { ...d, privacy: { ...d.privacy, accountant: 'pld', epsilonBudget: 0.5 } };
}

export const benchmark: Benchmark = {
  description:
    'TrainingService over loopback (simulated backend): 200 WatchJob streams + 50 submissions/s + 50 GetJob/s; unary latency, dropped events; then the same with PLD computations (validate_only, refused for the budget with the PLD reference) in the mix',
  async run({ quick, root, log }) {
    const durationS = quick ? 8 : 30;
    const roundMs = 100;
    const streams = 200;
    const watchedJobs = 20;
    const submitsPerS = 50;
    const getsPerS = 50;
    const pldPerS = 0.5;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-bench-api-'));
    fs.writeFileSync(
      path.join(dir, 'keys.yaml'),
      `keys:\n  - id: bench\n    tenant: bench\n    hash: sha256:${crypto.createHash('sha256').update(KEY).digest('hex')}\n`,
    );
    const bin = path.join(root, 'driver', 'dist', 'bin', 'tensorguard.js');
    const child = spawn(
      process.execPath,
      [
        bin,
        'serve',
        '--listen',
        '127.0.0.1:0',
        '--api-keys',
        path.join(dir, 'keys.yaml'),
        '--db',
        path.join(dir, 'jobs.db'),
        '--backend',
        'simulated',
        '--local-round-ms',
        String(roundMs),
        '--rate-limit',
        '100000',
        '--rate-burst',
        '100000',
        // Many long jobs of one tenant: the per-tenant limits are not what this measures.
        '--max-jobs-per-tenant',
        '100000',
        '--max-workers-per-tenant',
        '10000000',
        '--log-level',
        'warn',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      const port = await new Promise<number>((resolve, reject) => {
        let out = '';
        child.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /"port":(\d+)/.exec(out);
          if (m) resolve(Number(m[1]));
        });
        child.once('exit', (c) => reject(new Error(`server exited with ${c}`)));
      });
      const md = new grpc.Metadata();
      md.set('authorization', `Bearer ${KEY}`);
      // Several channels, as several client processes would have.
      const clients = Array.from(
        { length: 4 },
        () => new TrainingServiceClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure()),
      );
      const unary = <Res>(
        f: (
          c: InstanceType<typeof TrainingServiceClient>,
          cb: (e: grpc.ServiceError | null, r: Res) => void,
        ) => void,
        i: number,
      ) =>
        new Promise<{ ms: number; res: Res }>((resolve, reject) => {
          const t0 = performance.now();
          f(clients[i % clients.length]!, (e, r) => {
            const ms = performance.now() - t0;
            slow.push({ at: t0, ms });
            if (e) reject(e);
            else resolve({ ms, res: r });
          });
        });
      const slow: { at: number; ms: number }[] = [];
      const deadline = () => ({ deadline: Date.now() + 10_000 });

      log(`submitting ${watchedJobs} long jobs and opening ${streams} WatchJob streams`);
      // Long enough for both phases (without and with PLD computations in the mix).
      const rounds = Math.ceil((2 * durationS * 1000) / roundMs) + 50;
      const watched: string[] = [];
      for (let i = 0; i < watchedJobs; i++) {
        const { res } = await unary<pb.SubmitJobResponse>(
          (c, cb) =>
            c.submitJob(
              { requestId: `w-${i}`, spec: { document: doc(rounds, `w${i}`) }, validateOnly: false },
              md,
              deadline(),
              cb,
            ),
          i,
        );
        watched.push(res.job!.jobId);
      }
      let gaps = 0;
      let received = 0;
      let streamErrors = 0;
      let streamsLive = 0;
      const streamDone: Promise<{ jobId: string; last: number }>[] = [];
      for (let s = 0; s < streams; s++) {
        const jobId = watched[s % watchedJobs]!;
        streamDone.push(
          new Promise((resolve) => {
            let last = 0;
            const st = clients[s % clients.length]!.watchJob({ jobId, afterEventId: 0 }, md);
            st.on('data', (r: pb.WatchJobResponse) => {
              if (last === 0) streamsLive += 1;
              if (r.event!.eventId !== last + 1) gaps += 1;
              last = r.event!.eventId;
              received += 1;
            });
            st.on('error', () => {
              streamErrors += 1;
              resolve({ jobId, last });
            });
            st.on('end', () => resolve({ jobId, last }));
          }),
        );
      }

      // Measure the steady state: start the load once every stream has had its replay (the server
      // opening 200 streams at once would otherwise stall the first burst of calls by ~200 ms).
      const opened = performance.now();
      while (streamsLive < streams && performance.now() - opened < 10_000)
        await new Promise((r) => setTimeout(r, 20));
      log(`${streamsLive} of ${streams} streams live after ${(performance.now() - opened).toFixed(0)} ms`);
      slow.length = 0;

      // One phase of steady load; with `pldPerS` > 0, PLD computations (validate_only submissions
      // refused for their budget, naming the PLD reference: seconds of CPU each, run in the
      // server's accountant threads) join the mix, and the other calls' latency is measured
      // alongside.
      let n = 0;
      let errors = 0;
      const phase = async (pldPerS: number) => {
        log(
          `${durationS} s of ${submitsPerS} submissions/s and ${getsPerS} GetJob/s` +
            (pldPerS > 0 ? ` and ${pldPerS} PLD computations/s` : ''),
        );
        const submitMs: number[] = [];
        const getMs: number[] = [];
        const pldMs: number[] = [];
        let pldErrors = 0;
        const pending: Promise<void>[] = [];
        const t0 = performance.now();
        let pldSent = 0;
        while (performance.now() - t0 < durationS * 1000) {
          const tick = performance.now();
          if (pldPerS > 0 && pldSent < ((tick - t0) / 1000) * pldPerS + 1) {
            const i = pldSent++;
            const sent = performance.now();
            pending.push(
              unary<pb.SubmitJobResponse>(
                (c, cb) =>
                  c.submitJob(
                    { requestId: `pld-${i}`, spec: { document: pldDoc(`pld${i}`) }, validateOnly: true },
                    md,
                    { deadline: Date.now() + 60_000 },
                    cb,
                  ),
                i,
              ).then(
                // Expected: refused for the budget (FAILED_PRECONDITION), after the PLD reference.
                () => void (pldErrors += 1),
                (e: grpc.ServiceError) =>
                  e.code === grpc.status.FAILED_PRECONDITION
                    ? void pldMs.push(performance.now() - sent)
                    : void (pldErrors += 1),
              ),
            );
          }
          for (let k = 0; k < submitsPerS / 10; k++, n++) {
            const i = n;
            pending.push(
              unary<pb.SubmitJobResponse>(
                (c, cb) =>
                  c.submitJob(
                    { requestId: `s-${i}`, spec: { document: doc(3, `s${i}`) }, validateOnly: false },
                    md,
                    deadline(),
                    cb,
                  ),
                i,
              ).then(
                (r) => void submitMs.push(r.ms),
                () => void (errors += 1),
              ),
            );
            const jobId = watched[i % watchedJobs]!;
            pending.push(
              unary<pb.GetJobResponse>((c, cb) => c.getJob({ jobId }, md, deadline(), cb), i).then(
                (r) => void getMs.push(r.ms),
                () => void (errors += 1),
              ),
            );
          }
          const wait = 100 - (performance.now() - tick);
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        }
        const elapsedS = (performance.now() - t0) / 1000;
        await Promise.all(pending);
        const worst = [...slow].sort((a, b) => b.ms - a.ms).slice(0, 5);
        log(
          `slowest calls: ${worst.map((w) => `${w.ms.toFixed(0)} ms at t=${((w.at - t0) / 1000).toFixed(2)} s`).join(', ')}`,
        );
        slow.length = 0;
        return { submitMs, getMs, pldMs, pldErrors, elapsedS };
      };
      const base = await phase(0);
      const withPld = await phase(pldPerS);
      const { submitMs, getMs, elapsedS } = base;
      log('waiting for the watched jobs to finish');
      const ends = await Promise.all(streamDone);
      let dropped = 0;
      const finalLast = new Map<string, number>();
      for (const jobId of watched) {
        const { res } = await unary<pb.GetJobResponse>((c, cb) => c.getJob({ jobId }, md, deadline(), cb), 0);
        finalLast.set(jobId, res.job!.lastEventId);
      }
      for (const e of ends) dropped += finalLast.get(e.jobId)! - e.last;
      dropped += gaps;
      for (const c of clients) c.close();
      const all = [...submitMs, ...getMs];
      const rows: Row[] = [
        {
          call: 'SubmitJob',
          calls: submitMs.length,
          per_s: submitMs.length / elapsedS,
          p50_ms: pct(submitMs, 50),
          p99_ms: pct(submitMs, 99),
          max_ms: pct(submitMs, 100),
        },
        {
          call: 'GetJob',
          calls: getMs.length,
          per_s: getMs.length / elapsedS,
          p50_ms: pct(getMs, 50),
          p99_ms: pct(getMs, 99),
          max_ms: pct(getMs, 100),
        },
        {
          call: 'WatchJob',
          calls: streams,
          per_s: received / (base.elapsedS + withPld.elapsedS),
          p50_ms: null,
          p99_ms: null,
          max_ms: null,
        },
        ...(
          [
            ['SubmitJob (PLD in mix)', withPld.submitMs],
            ['GetJob (PLD in mix)', withPld.getMs],
            ['PLD validate_only', withPld.pldMs],
          ] as const
        ).map(([call, ms]) => ({
          call,
          calls: ms.length,
          per_s: ms.length / withPld.elapsedS,
          p50_ms: pct(ms, 50),
          p99_ms: pct(ms, 99),
          max_ms: pct(ms, 100),
        })),
      ];
      log(
        `PLD computations: ${withPld.pldMs.length} answered (refused for the budget, as intended), ${withPld.pldErrors} failed`,
      );
      log(`events received ${received}, stream errors ${streamErrors}, unary errors ${errors}`);
      return {
        rows,
        summary: {
          unary_p50_ms: pct(all, 50),
          unary_p99_ms: pct(all, 99),
          events_dropped: dropped,
          events_delivered: received,
          unary_errors: errors,
          stream_errors: streamErrors,
          submissions_per_s: submitMs.length / elapsedS,
          pld_in_mix_unary_p99_ms: pct([...withPld.submitMs, ...withPld.getMs], 99),
          pld_calls: withPld.pldMs.length,
          pld_errors: withPld.pldErrors,
        },
      };
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
};
