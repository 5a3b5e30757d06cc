// The typed errors of secure aggregation. Every error carries the round and, where one is to
// blame, the worker, so a coordinator can decide (retry the round, evict a worker, stop the job)
// without parsing messages. The gRPC edge maps `code` to a status code in one place
// (service/status.ts); nothing below that edge knows about gRPC.

/** Why a protocol step was refused, closed as a union so the edge can map it exhaustively. */
export type SecAggErrorCode =
  | 'CONFIG' // options that are invalid or could overflow; fix the configuration
  | 'OUT_OF_STAGE' // a message that belongs to another stage of the round
  | 'MALFORMED' // wrong length, bad encoding, unknown worker or index
  | 'DUPLICATE' // a second message of one kind from one worker in one stage
  | 'BELOW_THRESHOLD' // too few survivors: the round aborts and nothing is unmasked
  | 'DEADLINE' // a stage's deadline passed
  | 'DECRYPT' // an encrypted share failed authentication
  | 'SHARE_POLICY' // a request that would reveal both kinds of share for one peer
  | 'DECRYPT_POLICY' // the HE key holder refused to decrypt (too few inputs, second request, …)
  | 'ABORTED' // the round was aborted earlier; see `cause`
  | 'UNAVAILABLE' // the peer (aggregator or key holder) cannot be reached
  | 'PERMISSION' // the caller's certificate does not name the worker it claims to be
  | 'NOT_FOUND' // something named in the request (a model version) is not held
  | 'FINISHED'; // the job is over: no round will open again (the message says why)

export interface SecAggErrorFields {
  round?: number | undefined;
  workerId?: string | undefined;
  stage?: string | undefined;
  cause?: unknown;
}

/** Base class: `code` is stable, `message` says what went wrong and what to do next. */
export class SecAggError extends Error {
  readonly code: SecAggErrorCode;
  readonly round: number | undefined;
  readonly workerId: string | undefined;
  readonly stage: string | undefined;

  constructor(code: SecAggErrorCode, message: string, fields: SecAggErrorFields = {}) {
    super(message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.name = new.target.name;
    this.code = code;
    this.round = fields.round;
    this.workerId = fields.workerId;
    this.stage = fields.stage;
  }
}

/** An option is invalid, or the encoding could overflow the ring. `field` names the option. */
export class ConfigError extends SecAggError {
  readonly field: string;
  constructor(field: string, message: string) {
    super('CONFIG', `${field}: ${message}`);
    this.field = field;
  }
}

/** A message arrived in a stage it does not belong to. */
export class StageError extends SecAggError {
  readonly expected: string;
  constructor(message: string, fields: SecAggErrorFields & { stage: string; expected: string }) {
    super('OUT_OF_STAGE', message, fields);
    this.expected = fields.expected;
  }
}

/** A message that cannot be part of the protocol: wrong length, unknown index, bad bytes. */
export class MalformedMessageError extends SecAggError {
  constructor(message: string, fields: SecAggErrorFields = {}) {
    super('MALFORMED', message, fields);
  }
}

/** A worker sent the same kind of message twice in one stage. */
export class DuplicateMessageError extends SecAggError {
  constructor(message: string, fields: SecAggErrorFields = {}) {
    super('DUPLICATE', message, fields);
  }
}

/**
 * Fewer than the threshold survived a stage, or too few shares arrived to reconstruct a secret.
 * The round is aborted: nothing is unmasked and no partial sum is released.
 */
export class ThresholdError extends SecAggError {
  readonly survivors: number;
  readonly threshold: number;
  constructor(message: string, fields: SecAggErrorFields & { survivors: number; threshold: number }) {
    super('BELOW_THRESHOLD', message, fields);
    this.survivors = fields.survivors;
    this.threshold = fields.threshold;
  }
}

/** A stage's deadline passed before the caller's message or the stage's result was ready. */
export class DeadlineError extends SecAggError {
  constructor(message: string, fields: SecAggErrorFields = {}) {
    super('DEADLINE', message, fields);
  }
}

/** An encrypted share did not authenticate: wrong key, wrong context or tampering. */
export class ShareDecryptionError extends SecAggError {
  readonly fromIndex: number;
  constructor(message: string, fields: SecAggErrorFields & { fromIndex: number }) {
    super('DECRYPT', message, fields);
    this.fromIndex = fields.fromIndex;
  }
}

/**
 * An honest worker refused an unmask request: answering would reveal both the self-mask share
 * and the masking-key share of one peer in one round (which would unmask that peer's input), or
 * it would answer a second, different unmask request in the same round.
 */
export class SharePolicyError extends SecAggError {
  readonly peerIndex: number | undefined;
  constructor(message: string, fields: SecAggErrorFields & { peerIndex?: number }) {
    super('SHARE_POLICY', message, fields);
    this.peerIndex = fields.peerIndex;
  }
}

/** Which of the HE key holder's rules a decryption request broke. */
export type DecryptionRule =
  'MIN_INPUTS' | 'ONCE_PER_NONCE' | 'UNKNOWN_NONCE' | 'CONTRIBUTOR_CERTIFICATE' | 'CHECK_SLOTS' | 'KEY_ID';

/**
 * The HE key holder refused to decrypt: fewer distinct contributors than its floor, a nonce it
 * did not issue or was already asked for, a contributor certificate not of the job, check slots
 * that are not zero once the declared contributors' pads are removed, or an aggregate under
 * another key. Nothing is returned.
 */
export class DecryptionPolicyError extends SecAggError {
  readonly rule: DecryptionRule;
  constructor(message: string, fields: SecAggErrorFields & { rule: DecryptionRule }) {
    super('DECRYPT_POLICY', message, fields);
    this.rule = fields.rule;
  }
}

/** The round was aborted before; `cause` holds the error that aborted it. */
export class RoundAbortedError extends SecAggError {
  constructor(message: string, fields: SecAggErrorFields = {}) {
    super('ABORTED', message, fields);
  }
}

/** The aggregator or key holder could not be reached, or hung up. */
export class UnavailableError extends SecAggError {
  constructor(message: string, fields: SecAggErrorFields = {}) {
    super('UNAVAILABLE', message, fields);
  }
}

/** Under mutual TLS: the request names a worker other than the one the caller's certificate names. */
export class PermissionError extends SecAggError {
  constructor(message: string, fields: SecAggErrorFields = {}) {
    super('PERMISSION', message, fields);
  }
}

/** What the request names (a model version) is not held by the aggregator. */
export class NotFoundError extends SecAggError {
  constructor(message: string, fields: SecAggErrorFields = {}) {
    super('NOT_FOUND', message, fields);
  }
}

/** The aggregator finished the job: no round will open again; `message` carries its reason. */
export class JobFinishedError extends SecAggError {
  constructor(message: string, fields: SecAggErrorFields = {}) {
    super('FINISHED', message, fields);
  }
}
