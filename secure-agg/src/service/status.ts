// Maps the domain error codes to gRPC status codes and back: the only place that knows both.
import { status, type ServiceError } from '@grpc/grpc-js';
import {
  DeadlineError,
  DuplicateMessageError,
  MalformedMessageError,
  RoundAbortedError,
  SecAggError,
  StageError,
  UnavailableError,
  PermissionError,
  NotFoundError,
  JobFinishedError,
  type SecAggErrorCode,
} from '../index.js';

const TO_STATUS: Record<SecAggErrorCode, status> = {
  CONFIG: status.INVALID_ARGUMENT,
  MALFORMED: status.INVALID_ARGUMENT,
  DECRYPT: status.INVALID_ARGUMENT,
  OUT_OF_STAGE: status.FAILED_PRECONDITION,
  SHARE_POLICY: status.FAILED_PRECONDITION,
  DECRYPT_POLICY: status.FAILED_PRECONDITION,
  DUPLICATE: status.ALREADY_EXISTS,
  BELOW_THRESHOLD: status.ABORTED,
  ABORTED: status.ABORTED,
  DEADLINE: status.DEADLINE_EXCEEDED,
  UNAVAILABLE: status.UNAVAILABLE,
  PERMISSION: status.PERMISSION_DENIED,
  NOT_FOUND: status.NOT_FOUND,
  // gRPC's code for iterating past the end: there is no next round.
  FINISHED: status.OUT_OF_RANGE,
};

/** The status code and details a handler answers with for `err` (INTERNAL for non-domain errors). */
export function toStatus(err: unknown): { code: status; details: string } {
  if (err instanceof SecAggError) return { code: TO_STATUS[err.code], details: err.message };
  // Never leak a stack; the aggregator logs the original.
  return { code: status.INTERNAL, details: 'internal error in the aggregator' };
}

/** A domain error for a failed call, keeping the status in the message and the call error as cause. */
export function fromStatus(err: ServiceError, what: string, round?: number): SecAggError {
  const msg = `${what}: ${err.details || err.message}`;
  switch (err.code) {
    case status.INVALID_ARGUMENT:
      return new MalformedMessageError(msg, { round, cause: err });
    case status.PERMISSION_DENIED:
    case status.UNAUTHENTICATED:
      return new PermissionError(msg, { round, cause: err });
    case status.NOT_FOUND:
      return new NotFoundError(msg, { round, cause: err });
    case status.OUT_OF_RANGE:
      // The reason is the aggregator's, verbatim: the worker reports why the job ended.
      return new JobFinishedError(err.details || err.message, { round, cause: err });
    case status.FAILED_PRECONDITION:
      return new StageError(msg, { round, cause: err, stage: 'unknown', expected: 'unknown' });
    case status.ALREADY_EXISTS:
      return new DuplicateMessageError(msg, { round, cause: err });
    case status.ABORTED:
      return new RoundAbortedError(msg, { round, cause: err });
    case status.DEADLINE_EXCEEDED:
      return new DeadlineError(msg, { round, cause: err });
    default:
      return new UnavailableError(msg, { round, cause: err });
  }
}
