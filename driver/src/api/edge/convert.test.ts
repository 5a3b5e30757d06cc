import { trainingService as pb } from '@tensorguard/proto';
import { expect } from 'chai';
import {
  artifactKindFromProto,
  artifactKindToProto,
  artifactPartFromProto,
  artifactPartToProto,
  jobEventFromProto,
  jobEventToProto,
  jobFromProto,
  jobStateFromProto,
  jobStateToProto,
  jobToProto,
  listFilterFromProto,
  listFilterToProto,
  privacyReportFromProto,
  privacyReportToProto,
} from './convert.js';
import {
  ARTIFACT_KINDS,
  type ArtifactPart,
  type Job,
  type JobEvent,
  type JobState,
  type PrivacyReport,
} from '../jobs/domain.js';

/** Domain -> proto -> bytes -> proto -> domain must be the identity. */
function viaWire<T, P>(
  toProto: (x: T) => P,
  fromProto: (p: P) => T,
  codec: { encode(p: P): { finish(): Uint8Array }; decode(b: Uint8Array): P },
  x: T,
): T {
  return fromProto(codec.decode(codec.encode(toProto(x)).finish()));
}

const job: Job = {
  jobId: 'job-abcdefghijklmnopqrstuvwxyz',
  tenant: 'team-a',
  displayName: 'fmnist',
  state: 'RUNNING',
  message: '',
  requestId: 'req-1',
  createTimeMs: 1_700_000_000_123,
  updateTimeMs: 1_700_000_001_456,
  endTimeMs: null,
  roundsCompleted: 3,
  roundsTotal: 10,
  privacySpent: { epsilon: 0.8326737418811305, delta: 1e-5, accountant: 'rdp' },
  evalAccuracy: 0.71,
  lastEventId: 7,
  spec: {
    name: 'fmnist',
    rounds: 10,
    privacy: { delta: 1e-5, epsilonBudget: null },
    model: { hidden: [16, 8] },
  },
  backendJobId: 'raysubmit_1',
};

describe('api/convert', () => {
  it('round-trips every job state and refuses unknown numbers', () => {
    for (const s of ['QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED'] as JobState[]) {
      expect(jobStateFromProto(jobStateToProto(s))).to.equal(s);
    }
    expect(jobStateFromProto(pb.JobState.JOB_STATE_UNSPECIFIED)).to.equal(null);
    expect(jobStateFromProto(99 as pb.JobState)).to.equal(null);
  });

  it('round-trips a job through the wire, with and without optional fields', () => {
    expect(viaWire(jobToProto, jobFromProto, pb.Job, job)).to.deep.equal(job);
    const done = {
      ...job,
      state: 'FAILED' as const,
      endTimeMs: 1_700_000_002_000,
      evalAccuracy: null,
      message: 'boom',
    };
    expect(viaWire(jobToProto, jobFromProto, pb.Job, done)).to.deep.equal(done);
  });

  it('round-trips each kind of event', () => {
    const base = { eventId: 4, jobId: job.jobId, timeMs: 1_700_000_000_999 };
    const events: JobEvent[] = [
      { ...base, type: 'state_changed', state: 'QUEUED', previousState: null, message: '' },
      { ...base, type: 'state_changed', state: 'CANCELLED', previousState: 'RUNNING', message: 'by request' },
      { ...base, type: 'round_progress', round: 3, roundsTotal: 10, privacySpent: job.privacySpent },
      { ...base, type: 'eval_metrics', round: 3, accuracy: 0.5, loss: null },
      { ...base, type: 'eval_metrics', round: 4, accuracy: 0.6, loss: 1.25 },
    ];
    for (const e of events)
      expect(viaWire(jobEventToProto, jobEventFromProto, pb.JobEvent, e)).to.deep.equal(e);
    expect(() => jobEventFromProto({ eventId: 1, jobId: 'j' })).to.throw('has no kind set');
  });

  it('round-trips a privacy report', () => {
    const r: PrivacyReport = {
      jobId: job.jobId,
      tenant: 'team-a',
      state: 'SUCCEEDED',
      generateTimeMs: 1_700_000_003_000,
      epsilon: 1.5,
      delta: 1e-5,
      epsilonBudget: 3,
      roundsCompleted: 10,
      parameters: {
        accountant: 'rdp',
        mechanism: 'poisson_subsampled_gaussian',
        noiseMultiplier: 1.1,
        clipNorm: 1,
        samplingRate: 0.01,
        steps: 10,
        delta: 1e-5,
        orders: [2, 3, 4.5],
        minContributors: 2,
        numWorkers: 3,
      },
      shards: [
        { shardId: 'shard-0', epsilon: 1.5, delta: 1e-5, examples: 20000, samplingRate: 0.01, steps: 10 },
      ],
      signedPayload: new Uint8Array([1, 2, 3]),
      signatureAlgorithm: 'ed25519',
      signature: new Uint8Array(64).fill(7),
      keyId: '0123456789abcdef',
      publicKeyPem: '-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----\n',
      nonPrivate: false,
    };
    expect(viaWire(privacyReportToProto, privacyReportFromProto, pb.PrivacyReport, r)).to.deep.equal(r);
    // A non-private report: ε = +Inf survives the bytes, with its flag.
    const inf: PrivacyReport = {
      ...r,
      epsilon: Infinity,
      nonPrivate: true,
      shards: [{ ...r.shards[0]!, epsilon: Infinity }],
      parameters: { ...r.parameters, noiseMultiplier: 0 },
    };
    expect(viaWire(privacyReportToProto, privacyReportFromProto, pb.PrivacyReport, inf)).to.deep.equal(inf);
    expect(() => privacyReportFromProto({ ...privacyReportToProto(r), signatureAlgorithm: 'rsa' })).to.throw(
      'unknown signature algorithm "rsa"',
    );
  });

  it('round-trips every artifact kind and refuses UNSPECIFIED and unknown numbers', () => {
    for (const k of ARTIFACT_KINDS) expect(artifactKindFromProto(artifactKindToProto(k))).to.equal(k);
    const req = (kind: pb.ArtifactKind) =>
      pb.GetJobArtifactRequest.decode(pb.GetJobArtifactRequest.encode({ jobId: 'j', kind }).finish()).kind;
    expect(artifactKindFromProto(req(artifactKindToProto('ADAPTER')))).to.equal('ADAPTER');
    expect(artifactKindFromProto(pb.ArtifactKind.ARTIFACT_KIND_UNSPECIFIED)).to.equal(null);
    expect(artifactKindFromProto(42 as pb.ArtifactKind)).to.equal(null);
  });

  it('round-trips artifact stream parts (header, chunk, empty chunk) through the wire', () => {
    const parts: ArtifactPart[] = [
      {
        type: 'file',
        file: {
          name: 'model.safetensors',
          sizeBytes: 3 * 1024 ** 3,
          sha256: 'ab'.repeat(32),
          mediaType: 'application/octet-stream',
        },
      },
      { type: 'chunk', data: new Uint8Array([0, 1, 2, 255]) },
      // A view into a larger buffer: only its own bytes travel.
      { type: 'chunk', data: new Uint8Array(new Uint8Array([9, 8, 7, 6, 5]).buffer, 1, 3) },
      { type: 'chunk', data: new Uint8Array(0) },
    ];
    for (const p of parts) {
      const back = viaWire(artifactPartToProto, artifactPartFromProto, pb.GetJobArtifactResponse, p);
      if (p.type === 'chunk')
        expect(back).to.deep.equal({ type: 'chunk', data: new Uint8Array([...p.data]) });
      else expect(back).to.deep.equal(p);
    }
    expect(() => artifactPartFromProto({})).to.throw('neither a file header nor a chunk');
  });

  it('round-trips list filters and reports unknown states', () => {
    const f = { states: ['RUNNING', 'FAILED'] as JobState[], createTimeFromMs: 5, createTimeToMs: null };
    const req = { pageSize: 0, pageToken: '', ...listFilterToProto(f) };
    expect(
      listFilterFromProto(pb.ListJobsRequest.decode(pb.ListJobsRequest.encode(req).finish())),
    ).to.deep.equal({
      filter: f,
      unknownStates: [],
    });
    expect(
      listFilterFromProto({ pageSize: 0, pageToken: '', states: [2, 77 as pb.JobState] }).unknownStates,
    ).to.deep.equal([77]);
  });
});
