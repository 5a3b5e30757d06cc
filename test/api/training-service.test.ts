// TrainingService end to end over loopback, with real processes: a `tensorguard serve` process
// and, per job, a real Node process started by the local-process backend that prints the
// coordinator's metric-line contract (no Ray cluster here; ε comes from the real RDP accountant).
import * as grpc from '@grpc/grpc-js';
import { trainingService as pb } from '@tensorguard/proto';
import { expect } from 'chai';
import path from 'node:path';
import { decodeStatus } from '../../driver/src/api/edge/status-details.js';
import { verifyReport } from '../../driver/src/api/jobs/privacy-report.js';
import { epsilonSchedule } from '../../driver/src/api/jobs/accounting.js';
import {
  bearer,
  call,
  client,
  jobDocument,
  keyFile,
  root,
  type Client,
  type ServerProcess,
  startServer,
  tmpDir,
  watch,
} from './helpers.js';

const KEY_A = 'tg_test_key_tenant_a_0123456789abcdef';
const KEY_A2 = 'tg_test_key_tenant_a_readonly_0123456';
const KEY_B = 'tg_test_key_tenant_b_0123456789abcdef';
const KEY_REVOKED = 'tg_test_key_revoked_0123456789abcdef';
const KEY_SLOW = 'tg_test_key_rate_limited_0123456789ab';

function statusOf(err: unknown): {
  code: number;
  message: string;
  details: ReturnType<typeof decodeStatus>['details'];
} {
  const e = err as grpc.ServiceError;
  const bin = e.metadata?.get('grpc-status-details-bin')[0];
  const d = bin ? decodeStatus(bin as Buffer) : { code: e.code, message: e.details, details: {} };
  expect(d.code).to.equal(e.code);
  return { code: e.code, message: e.details, details: d.details };
}

async function expectCode<T>(p: Promise<T>, code: grpc.status) {
  try {
    await p;
  } catch (err) {
    const s = statusOf(err);
    expect(s.code, s.message).to.equal(code);
    return s;
  }
  throw new Error(`expected status ${grpc.status[code]}, got OK`);
}

describe('TrainingService (tensorguard serve, local-process backend)', function () {
  this.timeout(120_000);
  let dir: string;
  let server: ServerProcess;
  let c: Client;
  const A = bearer(KEY_A);
  const B = bearer(KEY_B);

  before(async () => {
    dir = tmpDir('svc');
    const keys = keyFile(dir, [
      { id: 'a', tenant: 'team-a', key: KEY_A },
      { id: 'a-read', tenant: 'team-a', key: KEY_A2, scopes: ['jobs.read'] },
      { id: 'b', tenant: 'team-b', key: KEY_B },
      { id: 'old', tenant: 'team-a', key: KEY_REVOKED, revoked: true },
      { id: 'slow', tenant: 'team-c', key: KEY_SLOW, rateLimit: { perSecond: 1, burst: 3 } },
    ]);
    server = await startServer([
      '--listen',
      '127.0.0.1:0',
      '--api-keys',
      keys,
      '--db',
      path.join(dir, 'jobs.db'),
      '--backend',
      'local-process',
      '--local-round-ms',
      '100',
      '--rate-limit',
      '1000',
      '--rate-burst',
      '1000',
    ]);
    c = client(server.address);
  });

  after(async () => {
    c?.close();
    if (server) expect(await server.stop()).to.equal(0);
  });

  it('submits a job, follows its stream to completion, and returns a signed privacy report', async () => {
    const doc = jobDocument({ rounds: 6 });
    const res = await call(
      c,
      c.submitJob,
      { requestId: 'e2e-1', spec: { document: doc }, validateOnly: false },
      A,
    );
    expect(res.created).to.equal(true);
    const job = res.job!;
    expect(job.jobId).to.match(/^job-[a-z2-7]{26}$/);
    expect(job.tenant).to.equal('team-a');
    expect(job.roundsTotal).to.equal(6);

    const { events, error } = await watch(c, { jobId: job.jobId, afterEventId: 0 }, A);
    expect(error).to.equal(null);
    expect(events.map((e) => e.eventId)).to.deep.equal(events.map((_, i) => i + 1));
    const states = events.filter((e) => e.stateChanged).map((e) => e.stateChanged!.state);
    expect(states).to.deep.equal([
      pb.JobState.JOB_STATE_QUEUED,
      pb.JobState.JOB_STATE_RUNNING,
      pb.JobState.JOB_STATE_SUCCEEDED,
    ]);
    const rounds = events.filter((e) => e.roundProgress).map((e) => e.roundProgress!);
    expect(rounds.map((r) => r.round)).to.deep.equal([1, 2, 3, 4, 5, 6]);
    const eps = rounds.map((r) => r.privacySpent!.epsilon);
    for (let i = 1; i < eps.length; i++) expect(eps[i]).to.be.greaterThan(eps[i - 1]!);
    const evals = events.filter((e) => e.evalMetrics).map((e) => e.evalMetrics!.round);
    expect(evals).to.deep.equal([2, 4, 6]);

    const got = await call(c, c.getJob, { jobId: job.jobId }, A);
    expect(got.job!.state).to.equal(pb.JobState.JOB_STATE_SUCCEEDED);
    expect(got.job!.roundsCompleted).to.equal(6);
    expect(got.job!.lastEventId).to.equal(events.length);
    expect(got.job!.endTime).to.be.instanceOf(Date);

    const { report } = await call(c, c.getPrivacyReport, { jobId: job.jobId }, A);
    const signed = verifyReport(report!, server.signingKeyId);
    expect(signed.job_id).to.equal(job.jobId);
    expect(signed.epsilon).to.equal(eps.at(-1));
    expect(report!.epsilon).to.equal(eps.at(-1));
    const p = report!.parameters!;
    expect([p.samplingRate, p.noiseMultiplier, p.steps, p.delta, p.clipNorm]).to.deep.equal([
      0.02, 1.1, 6, 1e-5, 1,
    ]);
    expect(p.numWorkers).to.equal(2);
    expect(p.minContributors).to.equal(2);
    expect(p.orders.length).to.be.greaterThan(10);
    // Recompute ε from the reported parameters alone.
    const recomputed = await epsilonSchedule({
      samplingRate: p.samplingRate,
      noiseMultiplier: p.noiseMultiplier,
      delta: p.delta,
      rounds: p.steps,
    });
    expect(recomputed.at(-1)).to.be.closeTo(report!.epsilon, 1e-12);
    // A tampered payload does not verify.
    const tampered = Buffer.from(report!.signedPayload);
    tampered[tampered.length - 2] = tampered[tampered.length - 2]! ^ 1;
    expect(() => verifyReport({ ...report!, signedPayload: tampered })).to.throw('signature is invalid');
  });

  it('is idempotent by request_id and refuses a reused request_id with another spec', async () => {
    const doc = jobDocument({ rounds: 2, name: 'idem' });
    const first = await call(
      c,
      c.submitJob,
      { requestId: 'idem-1', spec: { document: doc }, validateOnly: false },
      A,
    );
    const again = await call(
      c,
      c.submitJob,
      { requestId: 'idem-1', spec: { document: doc }, validateOnly: false },
      A,
    );
    expect(again.created).to.equal(false);
    expect(again.job!.jobId).to.equal(first.job!.jobId);
    const s = await expectCode(
      call(
        c,
        c.submitJob,
        { requestId: 'idem-1', spec: { document: { ...doc, rounds: 3 } }, validateOnly: false },
        A,
      ),
      grpc.status.ALREADY_EXISTS,
    );
    expect(s.details.errorInfo?.metadata.job_id).to.equal(first.job!.jobId);
    // The same request_id in another tenant is another job.
    const other = await call(
      c,
      c.submitJob,
      { requestId: 'idem-1', spec: { document: doc }, validateOnly: false },
      B,
    );
    expect(other.created).to.equal(true);
    expect(other.job!.jobId).to.not.equal(first.job!.jobId);
  });

  it('answers INVALID_ARGUMENT listing every bad field with its path, in the message and as BadRequest', async () => {
    const doc = jobDocument({ rounds: 0 });
    (doc.privacy as Record<string, unknown>).delta = 2;
    (doc.privacy as Record<string, unknown>).samplingRate = 'high';
    const s = await expectCode(
      call(c, c.submitJob, { requestId: 'bad id!', spec: { document: doc }, validateOnly: false }, A),
      grpc.status.INVALID_ARGUMENT,
    );
    const fields = s.details.badRequest!.map((v) => v.field).sort();
    expect(fields).to.deep.equal([
      'request_id',
      'spec.document.privacy.delta',
      'spec.document.privacy.samplingRate',
      'spec.document.rounds',
    ]);
    for (const f of fields) expect(s.message).to.include(f);
    const y = await expectCode(
      call(
        c,
        c.submitJob,
        { requestId: 'yaml-1', spec: { yaml: 'name: [unclosed' }, validateOnly: false },
        A,
      ),
      grpc.status.INVALID_ARGUMENT,
    );
    expect(y.details.badRequest![0]!.field).to.equal('spec.yaml');
    const none = await expectCode(
      call(c, c.submitJob, { requestId: 'x', validateOnly: false }, A),
      grpc.status.INVALID_ARGUMENT,
    );
    expect(none.details.badRequest![0]).to.deep.equal({ field: 'spec', description: 'is required' });
  });

  it('answers FAILED_PRECONDITION when the planned rounds would exhaust the privacy budget', async () => {
    const doc = jobDocument({ rounds: 500 });
    (doc.privacy as Record<string, unknown>).epsilonBudget = 1;
    const s = await expectCode(
      call(c, c.submitJob, { requestId: 'budget-1', spec: { document: doc }, validateOnly: false }, A),
      grpc.status.FAILED_PRECONDITION,
    );
    expect(s.message).to.match(/privacy budget exhausted: 500 rounds .* above privacy.epsilonBudget 1/);
    expect(s.details.preconditionFailure![0]!.subject).to.equal('spec.document.privacy.epsilonBudget');
    // validate_only runs the same checks and records nothing.
    const ok = await call(
      c,
      c.submitJob,
      { requestId: 'vo-1', spec: { document: jobDocument() }, validateOnly: true },
      A,
    );
    expect(ok.job).to.equal(undefined);
  });

  it('keeps tenants apart: B cannot read, watch, cancel or report on A’s job', async () => {
    const { job } = await call(
      c,
      c.submitJob,
      { requestId: 'iso-1', spec: { document: jobDocument({ rounds: 30 }) }, validateOnly: false },
      A,
    );
    const id = job!.jobId;
    await expectCode(call(c, c.getJob, { jobId: id }, B), grpc.status.NOT_FOUND);
    await expectCode(call(c, c.cancelJob, { jobId: id, reason: '' }, B), grpc.status.NOT_FOUND);
    await expectCode(call(c, c.getPrivacyReport, { jobId: id }, B), grpc.status.NOT_FOUND);
    const w = await watch(c, { jobId: id, afterEventId: 0 }, B);
    expect(w.error?.code).to.equal(grpc.status.NOT_FOUND);
    expect(w.events).to.deep.equal([]);
    const listB = await call(c, c.listJobs, { pageSize: 500, pageToken: '', states: [] }, B);
    expect(listB.jobs.map((j) => j.jobId)).to.not.include(id);
    // A read-only key of tenant A may read but not cancel.
    const RO = bearer(KEY_A2);
    expect((await call(c, c.getJob, { jobId: id }, RO)).job!.jobId).to.equal(id);
    await expectCode(call(c, c.cancelJob, { jobId: id, reason: '' }, RO), grpc.status.PERMISSION_DENIED);
    // A's job is untouched; A cancels it, idempotently.
    const cancelled = await call(c, c.cancelJob, { jobId: id, reason: 'test over' }, A);
    expect(cancelled.job!.state).to.equal(pb.JobState.JOB_STATE_CANCELLED);
    expect(cancelled.job!.message).to.equal('test over');
    const again = await call(c, c.cancelJob, { jobId: id, reason: '' }, A);
    expect(again.job!.state).to.equal(pb.JobState.JOB_STATE_CANCELLED);
    const w2 = await watch(c, { jobId: id, afterEventId: 0 }, A);
    expect(w2.events.at(-1)!.stateChanged!.state).to.equal(pb.JobState.JOB_STATE_CANCELLED);
  });

  it('refuses missing, malformed, unknown and revoked keys with UNAUTHENTICATED', async () => {
    const none = new grpc.Metadata();
    const s1 = await expectCode(
      call(c, c.listJobs, { pageSize: 1, pageToken: '', states: [] }, none),
      grpc.status.UNAUTHENTICATED,
    );
    expect(s1.message).to.include('missing API key');
    const bad = new grpc.Metadata();
    bad.set('authorization', 'Basic abc');
    await expectCode(
      call(c, c.listJobs, { pageSize: 1, pageToken: '', states: [] }, bad),
      grpc.status.UNAUTHENTICATED,
    );
    const s3 = await expectCode(
      call(c, c.listJobs, { pageSize: 1, pageToken: '', states: [] }, bearer('tg_not_a_key')),
      grpc.status.UNAUTHENTICATED,
    );
    expect(s3.details.errorInfo?.reason).to.equal('API_KEY_UNKNOWN');
    const s4 = await expectCode(
      call(c, c.listJobs, { pageSize: 1, pageToken: '', states: [] }, bearer(KEY_REVOKED)),
      grpc.status.UNAUTHENTICATED,
    );
    expect(s4.message).to.include('revoked');
    const w = await watch(
      c,
      { jobId: 'job-aaaaaaaaaaaaaaaaaaaaaaaaaa', afterEventId: 0 },
      bearer(KEY_REVOKED),
    );
    expect(w.error?.code).to.equal(grpc.status.UNAUTHENTICATED);
    expect(server.logs()).to.not.include(KEY_A);
    expect(server.logs()).to.not.include(KEY_REVOKED);
  });

  it('rate-limits per key with RESOURCE_EXHAUSTED and a retry delay', async () => {
    const S = bearer(KEY_SLOW);
    const results = await Promise.allSettled(
      Array.from({ length: 6 }, () => call(c, c.listJobs, { pageSize: 1, pageToken: '', states: [] }, S)),
    );
    const refused = results
      .filter((r) => r.status === 'rejected')
      .map((r) => statusOf((r as PromiseRejectedResult).reason));
    expect(results.filter((r) => r.status === 'fulfilled')).to.have.length(3);
    expect(refused).to.have.length(3);
    for (const s of refused) {
      expect(s.code).to.equal(grpc.status.RESOURCE_EXHAUSTED);
      expect(s.details.retryDelayMs).to.be.greaterThan(0).and.at.most(1000);
    }
    // Another key is unaffected.
    await call(c, c.listJobs, { pageSize: 1, pageToken: '', states: [] }, B);
  });

  it('lists jobs newest first with filters and page tokens', async () => {
    const D = bearer(KEY_B);
    for (let i = 0; i < 5; i++) {
      await call(
        c,
        c.submitJob,
        {
          requestId: `page-${i}`,
          spec: { document: jobDocument({ rounds: 1, name: `p${i}` }) },
          validateOnly: false,
        },
        D,
      );
    }
    const seen: string[] = [];
    let token = '';
    do {
      const page = await call(c, c.listJobs, { pageSize: 2, pageToken: token, states: [] }, D);
      expect(page.jobs.length).to.be.at.most(2);
      seen.push(...page.jobs.map((j) => j.jobId));
      token = page.nextPageToken;
    } while (token !== '');
    const all = await call(c, c.listJobs, { pageSize: 0, pageToken: '', states: [] }, D);
    expect(seen).to.deep.equal(all.jobs.map((j) => j.jobId));
    expect(new Set(seen).size).to.equal(seen.length);
    const times = all.jobs.map((j) => j.createTime!.getTime());
    expect(times).to.deep.equal([...times].sort((a, b) => b - a));
    const first = await call(c, c.listJobs, { pageSize: 1, pageToken: '', states: [] }, D);
    const s = await expectCode(
      call(
        c,
        c.listJobs,
        { pageSize: 1, pageToken: first.nextPageToken, states: [pb.JobState.JOB_STATE_FAILED] },
        D,
      ),
      grpc.status.INVALID_ARGUMENT,
    );
    expect(s.details.badRequest![0]!.field).to.equal('page_token');
    await expectCode(
      call(c, c.listJobs, { pageSize: 1, pageToken: 'garbage', states: [] }, D),
      grpc.status.INVALID_ARGUMENT,
    );
    const u = await expectCode(
      call(c, c.listJobs, { pageSize: 1, pageToken: '', states: [1, 42] }, D),
      grpc.status.INVALID_ARGUMENT,
    );
    expect(u.details.badRequest!.map((v) => v.field)).to.deep.equal(['states[1]']);
    const queued = await call(
      c,
      c.listJobs,
      { pageSize: 100, pageToken: '', states: [pb.JobState.JOB_STATE_CANCELLED] },
      D,
    );
    for (const j of queued.jobs) expect(j.state).to.equal(pb.JobState.JOB_STATE_CANCELLED);
  });

  it('honours deadlines and answers NOT_FOUND / INVALID_ARGUMENT for bad job ids', async () => {
    await expectCode(
      call(c, c.getJob, { jobId: 'job-aaaaaaaaaaaaaaaaaaaaaaaaaa' }, A),
      grpc.status.NOT_FOUND,
    );
    await expectCode(call(c, c.getJob, { jobId: '../etc/passwd' }, A), grpc.status.INVALID_ARGUMENT);
    await expectCode(
      call(c, c.getJob, { jobId: 'job-aaaaaaaaaaaaaaaaaaaaaaaaaa' }, A, -1),
      grpc.status.DEADLINE_EXCEEDED,
    );
  });

  it('serves grpc.health.v1 and server reflection', async () => {
    const protoLoader = await import('@grpc/proto-loader');
    const { protoPath } = await import('grpc-health-check');
    const healthDef = grpc.loadPackageDefinition(protoLoader.loadSync(protoPath)) as unknown as {
      grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
    };
    const h = new healthDef.grpc.health.v1.Health(server.address, grpc.credentials.createInsecure());
    const status = await new Promise<{ status: number }>((resolve, reject) =>
      h.check!({ service: 'tensorguard.v1.TrainingService' }, (err: Error | null, r: { status: number }) =>
        err ? reject(err) : resolve(r),
      ),
    );
    expect(status.status).to.equal(1); // SERVING
    h.close();
    const reflProto = path.join(
      root,
      'node_modules/@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto',
    );
    const reflDef = grpc.loadPackageDefinition(protoLoader.loadSync(reflProto)) as unknown as {
      grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } };
    };
    const r = new reflDef.grpc.reflection.v1.ServerReflection(
      server.address,
      grpc.credentials.createInsecure(),
    );
    const services = await new Promise<string[]>((resolve, reject) => {
      const s = r.serverReflectionInfo!();
      s.on('data', (m: { listServicesResponse?: { service: { name: string }[] } }) => {
        resolve(m.listServicesResponse!.service.map((x) => x.name));
        s.end();
      });
      s.on('error', reject);
      s.write({ listServices: '*' });
    });
    r.close();
    expect(services).to.include.members(['tensorguard.v1.TrainingService', 'grpc.health.v1.Health']);
  });
});
