// The one edge between the generated wire types and the API's domain types: symmetric
// xToProto / xFromProto pairs, round-trip tested in convert.test.ts.
import { trainingService as pb, type PrivacySpent as PbPrivacySpent } from '@tensorguard/proto';
import type {
  AccountingParameters,
  ArtifactKind,
  ArtifactPart,
  Job,
  JobEvent,
  JobState,
  ListJobsFilter,
  PrivacyReport,
  PrivacySpent,
  ShardPrivacy,
} from '../jobs/domain.js';

const STATE_TO_PROTO: Record<JobState, pb.JobState> = {
  QUEUED: pb.JobState.JOB_STATE_QUEUED,
  RUNNING: pb.JobState.JOB_STATE_RUNNING,
  SUCCEEDED: pb.JobState.JOB_STATE_SUCCEEDED,
  FAILED: pb.JobState.JOB_STATE_FAILED,
  CANCELLED: pb.JobState.JOB_STATE_CANCELLED,
};

export function jobStateToProto(s: JobState): pb.JobState {
  return STATE_TO_PROTO[s];
}

/** Returns null for UNSPECIFIED and for numbers this version does not know. */
export function jobStateFromProto(s: pb.JobState): JobState | null {
  for (const [k, v] of Object.entries(STATE_TO_PROTO)) if (v === s) return k as JobState;
  return null;
}

const dateOrUndefined = (ms: number | null): Date | undefined => (ms === null ? undefined : new Date(ms));
const msOrNull = (d: Date | undefined): number | null => (d === undefined ? null : d.getTime());

export function privacySpentToProto(p: PrivacySpent): PbPrivacySpent {
  return { epsilon: p.epsilon, delta: p.delta, accountant: p.accountant };
}

export function privacySpentFromProto(p: PbPrivacySpent | undefined): PrivacySpent {
  return { epsilon: p?.epsilon ?? 0, delta: p?.delta ?? 0, accountant: p?.accountant ?? '' };
}

export function jobToProto(j: Job): pb.Job {
  return {
    jobId: j.jobId,
    tenant: j.tenant,
    displayName: j.displayName,
    state: jobStateToProto(j.state),
    message: j.message,
    requestId: j.requestId,
    createTime: new Date(j.createTimeMs),
    updateTime: new Date(j.updateTimeMs),
    endTime: dateOrUndefined(j.endTimeMs),
    roundsCompleted: j.roundsCompleted,
    roundsTotal: j.roundsTotal,
    privacySpent: privacySpentToProto(j.privacySpent),
    evalAccuracy: j.evalAccuracy ?? undefined,
    lastEventId: j.lastEventId,
    spec: j.spec,
    backendJobId: j.backendJobId,
  };
}

export function jobFromProto(j: pb.Job): Job {
  return {
    jobId: j.jobId,
    tenant: j.tenant,
    displayName: j.displayName,
    state: jobStateFromProto(j.state) ?? 'QUEUED',
    message: j.message,
    requestId: j.requestId,
    createTimeMs: msOrNull(j.createTime) ?? 0,
    updateTimeMs: msOrNull(j.updateTime) ?? 0,
    endTimeMs: msOrNull(j.endTime),
    roundsCompleted: j.roundsCompleted,
    roundsTotal: j.roundsTotal,
    privacySpent: privacySpentFromProto(j.privacySpent),
    evalAccuracy: j.evalAccuracy ?? null,
    lastEventId: j.lastEventId,
    spec: (j.spec ?? {}) as Record<string, unknown>,
    backendJobId: j.backendJobId,
  };
}

export function jobEventToProto(e: JobEvent): pb.JobEvent {
  const base = { eventId: e.eventId, jobId: e.jobId, time: new Date(e.timeMs) };
  switch (e.type) {
    case 'state_changed':
      return {
        ...base,
        stateChanged: {
          state: jobStateToProto(e.state),
          previousState:
            e.previousState === null ? pb.JobState.JOB_STATE_UNSPECIFIED : jobStateToProto(e.previousState),
          message: e.message,
        },
      };
    case 'round_progress':
      return {
        ...base,
        roundProgress: {
          round: e.round,
          roundsTotal: e.roundsTotal,
          privacySpent: privacySpentToProto(e.privacySpent),
        },
      };
    case 'eval_metrics':
      return {
        ...base,
        evalMetrics: { round: e.round, accuracy: e.accuracy, loss: e.loss ?? undefined },
      };
  }
}

/** Throws on an event with no kind set (only a peer newer or broken than this one sends that). */
export function jobEventFromProto(e: pb.JobEvent): JobEvent {
  const base = { eventId: e.eventId, jobId: e.jobId, timeMs: msOrNull(e.time) ?? 0 };
  if (e.stateChanged) {
    return {
      ...base,
      type: 'state_changed',
      state: jobStateFromProto(e.stateChanged.state) ?? 'QUEUED',
      previousState: jobStateFromProto(e.stateChanged.previousState),
      message: e.stateChanged.message,
    };
  }
  if (e.roundProgress) {
    return {
      ...base,
      type: 'round_progress',
      round: e.roundProgress.round,
      roundsTotal: e.roundProgress.roundsTotal,
      privacySpent: privacySpentFromProto(e.roundProgress.privacySpent),
    };
  }
  if (e.evalMetrics) {
    return {
      ...base,
      type: 'eval_metrics',
      round: e.evalMetrics.round,
      accuracy: e.evalMetrics.accuracy,
      loss: e.evalMetrics.loss ?? null,
    };
  }
  throw new Error(`event ${e.eventId} of job ${e.jobId} has no kind set`);
}

export function accountingParametersToProto(p: AccountingParameters): pb.AccountingParameters {
  return { ...p, orders: [...p.orders] };
}

export function accountingParametersFromProto(p: pb.AccountingParameters | undefined): AccountingParameters {
  return {
    accountant: p?.accountant ?? '',
    mechanism: p?.mechanism ?? '',
    noiseMultiplier: p?.noiseMultiplier ?? 0,
    clipNorm: p?.clipNorm ?? 0,
    samplingRate: p?.samplingRate ?? 0,
    steps: p?.steps ?? 0,
    delta: p?.delta ?? 0,
    orders: [...(p?.orders ?? [])],
    minContributors: p?.minContributors ?? 0,
    numWorkers: p?.numWorkers ?? 0,
  };
}

export function shardPrivacyToProto(s: ShardPrivacy): pb.ShardPrivacy {
  return { ...s };
}

export function shardPrivacyFromProto(s: pb.ShardPrivacy): ShardPrivacy {
  return {
    shardId: s.shardId,
    epsilon: s.epsilon,
    delta: s.delta,
    examples: s.examples,
    samplingRate: s.samplingRate,
    steps: s.steps,
  };
}

export function privacyReportToProto(r: PrivacyReport): pb.PrivacyReport {
  return {
    jobId: r.jobId,
    tenant: r.tenant,
    state: jobStateToProto(r.state),
    generateTime: new Date(r.generateTimeMs),
    epsilon: r.epsilon,
    delta: r.delta,
    epsilonBudget: r.epsilonBudget,
    roundsCompleted: r.roundsCompleted,
    parameters: accountingParametersToProto(r.parameters),
    shards: r.shards.map(shardPrivacyToProto),
    signedPayload: Buffer.from(r.signedPayload),
    signatureAlgorithm: r.signatureAlgorithm,
    signature: Buffer.from(r.signature),
    keyId: r.keyId,
    publicKeyPem: r.publicKeyPem,
    nonPrivate: r.nonPrivate,
  };
}

/** Throws when the signature algorithm is not ed25519 (the only one this version knows). */
export function privacyReportFromProto(r: pb.PrivacyReport): PrivacyReport {
  if (r.signatureAlgorithm !== 'ed25519') {
    throw new Error(
      `privacy report of job ${r.jobId}: unknown signature algorithm "${r.signatureAlgorithm}"`,
    );
  }
  return {
    jobId: r.jobId,
    tenant: r.tenant,
    state: jobStateFromProto(r.state) ?? 'QUEUED',
    generateTimeMs: msOrNull(r.generateTime) ?? 0,
    epsilon: r.epsilon,
    delta: r.delta,
    epsilonBudget: r.epsilonBudget,
    roundsCompleted: r.roundsCompleted,
    parameters: accountingParametersFromProto(r.parameters),
    shards: r.shards.map(shardPrivacyFromProto),
    signedPayload: new Uint8Array(r.signedPayload),
    signatureAlgorithm: 'ed25519',
    signature: new Uint8Array(r.signature),
    keyId: r.keyId,
    publicKeyPem: r.publicKeyPem,
    nonPrivate: r.nonPrivate,
  };
}

/**
 * The filter of a ListJobs request. An unknown state number is not thrown but returned in
 * `unknownStates`, so the caller can report it as INVALID_ARGUMENT with its field path.
 */
export function listFilterFromProto(r: pb.ListJobsRequest): {
  filter: ListJobsFilter;
  unknownStates: number[];
} {
  const states: JobState[] = [];
  const unknownStates: number[] = [];
  for (const s of r.states) {
    const d = jobStateFromProto(s);
    if (d === null) unknownStates.push(s);
    else if (!states.includes(d)) states.push(d);
  }
  return {
    filter: {
      states,
      createTimeFromMs: msOrNull(r.createTimeFrom),
      createTimeToMs: msOrNull(r.createTimeTo),
    },
    unknownStates,
  };
}

export function listFilterToProto(
  f: ListJobsFilter,
): Pick<pb.ListJobsRequest, 'states' | 'createTimeFrom' | 'createTimeTo'> {
  return {
    states: f.states.map(jobStateToProto),
    createTimeFrom: dateOrUndefined(f.createTimeFromMs),
    createTimeTo: dateOrUndefined(f.createTimeToMs),
  };
}

const ARTIFACT_KIND_TO_PROTO: Record<ArtifactKind, pb.ArtifactKind> = {
  CHECKPOINT: pb.ArtifactKind.ARTIFACT_KIND_CHECKPOINT,
  ADAPTER: pb.ArtifactKind.ARTIFACT_KIND_ADAPTER,
  REPORT: pb.ArtifactKind.ARTIFACT_KIND_REPORT,
  METRICS: pb.ArtifactKind.ARTIFACT_KIND_METRICS,
  PRIVACY_REPORT: pb.ArtifactKind.ARTIFACT_KIND_PRIVACY_REPORT,
};

export function artifactKindToProto(k: ArtifactKind): pb.ArtifactKind {
  return ARTIFACT_KIND_TO_PROTO[k];
}

/** Returns null for UNSPECIFIED and for numbers this version does not know. */
export function artifactKindFromProto(k: pb.ArtifactKind): ArtifactKind | null {
  for (const [d, v] of Object.entries(ARTIFACT_KIND_TO_PROTO)) if (v === k) return d as ArtifactKind;
  return null;
}

export function artifactPartToProto(p: ArtifactPart): pb.GetJobArtifactResponse {
  return p.type === 'file'
    ? { file: { ...p.file } }
    : // A Buffer view, not a copy: chunks are up to 1 MiB each.
      { chunk: Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength) };
}

/** Throws on a message with neither part set (only a peer newer or broken than this one sends that). */
export function artifactPartFromProto(m: pb.GetJobArtifactResponse): ArtifactPart {
  if (m.file) {
    return {
      type: 'file',
      file: {
        name: m.file.name,
        sizeBytes: m.file.sizeBytes,
        sha256: m.file.sha256,
        mediaType: m.file.mediaType,
      },
    };
  }
  if (m.chunk !== undefined) return { type: 'chunk', data: new Uint8Array(m.chunk) };
  throw new Error('GetJobArtifact message has neither a file header nor a chunk');
}
