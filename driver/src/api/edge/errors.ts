// The API's one error class, with a closed set of canonical codes; everything thrown inside a
// handler is normalised by ApiError.from and mapped to a gRPC status only at the edge (server.ts).
import { Metadata, status as grpcStatus, type ServiceError } from '@grpc/grpc-js';
import { encodeStatus, type ErrorDetails, type FieldViolation } from './status-details.js';

export type ApiErrorCode =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'ABORTED'
  | 'FAILED_PRECONDITION'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED'
  | 'RESOURCE_EXHAUSTED'
  | 'DEADLINE_EXCEEDED'
  | 'CANCELLED'
  | 'UNAVAILABLE'
  | 'INTERNAL';

export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly code: ApiErrorCode,
    message: string,
    readonly details: ErrorDetails = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** INVALID_ARGUMENT listing every violation in the message and as google.rpc.BadRequest. */
  static invalidArgument(violations: FieldViolation[], what = 'request'): ApiError {
    const lines = violations.map((v) => `  ${v.field}: ${v.description}`);
    return new ApiError(
      'INVALID_ARGUMENT',
      `invalid ${what} (${violations.length} problem${violations.length === 1 ? '' : 's'}):\n${lines.join('\n')}`,
      { badRequest: violations },
    );
  }

  /** Keeps ApiErrors; anything else becomes INTERNAL with a message that leaks no internals. */
  static from(err: unknown): ApiError {
    if (err instanceof ApiError) return err;
    return new ApiError(
      'INTERNAL',
      'internal error; the server log has the details (search for the request id)',
      {},
      {
        cause: err,
      },
    );
  }

  get grpcCode(): grpcStatus {
    return grpcStatus[this.code];
  }

  /** The ServiceError grpc-js sends: code, message, and google.rpc.Status in the trailers. */
  toServiceError(): Partial<ServiceError> {
    const metadata = new Metadata();
    metadata.set('grpc-status-details-bin', encodeStatus(this.grpcCode, this.message, this.details));
    return { code: this.grpcCode, details: this.message, metadata };
  }
}
