// Domain types of the TrainingService. Handlers, the store and the backends speak these; the
// generated wire types (@tensorguard/proto) are converted at one edge, in convert.ts.

/** A job's lifecycle; terminal states never change. */
export type JobState = 'QUEUED' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED';

export const TERMINAL_STATES: readonly JobState[] = ['SUCCEEDED', 'FAILED', 'CANCELLED'];

export const isTerminal = (s: JobState): boolean => TERMINAL_STATES.includes(s);

/** Legal transitions; anything else is a bug and throws with the current state. */
const NEXT: Record<JobState, readonly JobState[]> = {
  QUEUED: ['RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED'],
  RUNNING: ['SUCCEEDED', 'FAILED', 'CANCELLED'],
  SUCCEEDED: [],
  FAILED: [],
  CANCELLED: [],
};

export function assertTransition(from: JobState, to: JobState, jobId: string): void {
  if (!NEXT[from].includes(to)) {
    throw new Error(`job ${jobId}: illegal state transition ${from} -> ${to} (current state ${from})`);
  }
}

export interface PrivacySpent {
  epsilon: number;
  delta: number;
  /** 'rdp' or 'pld'. */
  accountant: string;
}

/** A job as the API shows it. Times are epoch milliseconds. */
export interface Job {
  jobId: string;
  tenant: string;
  displayName: string;
  state: JobState;
  message: string;
  requestId: string;
  createTimeMs: number;
  updateTimeMs: number;
  endTimeMs: number | null;
  roundsCompleted: number;
  roundsTotal: number;
  privacySpent: PrivacySpent;
  evalAccuracy: number | null;
  lastEventId: number;
  /** The validated job document with defaults applied. */
  spec: Record<string, unknown>;
  backendJobId: string;
}

export type JobEventKind =
  | { type: 'state_changed'; state: JobState; previousState: JobState | null; message: string }
  | { type: 'round_progress'; round: number; roundsTotal: number; privacySpent: PrivacySpent }
  | { type: 'eval_metrics'; round: number; accuracy: number; loss: number | null };

/** One stored event; ids are per job, 1, 2, 3, ... without gaps. */
export type JobEvent = { eventId: number; jobId: string; timeMs: number } & JobEventKind;

export interface ListJobsFilter {
  states: JobState[];
  /** Inclusive lower / exclusive upper bound on create time, epoch ms. */
  createTimeFromMs: number | null;
  createTimeToMs: number | null;
}

export interface AccountingParameters {
  accountant: string;
  mechanism: string;
  noiseMultiplier: number;
  clipNorm: number;
  samplingRate: number;
  steps: number;
  delta: number;
  orders: number[];
  minContributors: number;
  numWorkers: number;
}

export interface ShardPrivacy {
  shardId: string;
  epsilon: number;
  delta: number;
  examples: number;
  samplingRate: number;
  steps: number;
}

/** The signed part of a privacy report. */
export interface PrivacyReportBody {
  jobId: string;
  tenant: string;
  state: JobState;
  generateTimeMs: number;
  epsilon: number;
  delta: number;
  /** 0 = no budget. */
  epsilonBudget: number;
  roundsCompleted: number;
  parameters: AccountingParameters;
  shards: ShardPrivacy[];
}

export interface PrivacyReport extends PrivacyReportBody {
  /** No guarantee holds: ε is infinite (no noise). Signed as `non_private`. */
  nonPrivate: boolean;
  signedPayload: Uint8Array;
  signatureAlgorithm: 'ed25519';
  signature: Uint8Array;
  keyId: string;
  publicKeyPem: string;
}

/** What GetJobArtifact returns (docs/api.md, "Artifacts"). */
export type ArtifactKind = 'CHECKPOINT' | 'ADAPTER' | 'REPORT' | 'METRICS' | 'PRIVACY_REPORT';

export const ARTIFACT_KINDS: readonly ArtifactKind[] = [
  'CHECKPOINT',
  'ADAPTER',
  'REPORT',
  'METRICS',
  'PRIVACY_REPORT',
];

/** One file of an artifact, announced before its bytes. */
export interface ArtifactFile {
  /** A plain file name, no directories. */
  name: string;
  sizeBytes: number;
  /** SHA-256 of the bytes, lowercase hex. */
  sha256: string;
  mediaType: string;
}

/** One message of an artifact stream: a file's header, or the next bytes of that file. */
export type ArtifactPart = { type: 'file'; file: ArtifactFile } | { type: 'chunk'; data: Uint8Array };
