// Raw-bytes gRPC calls for tests that send malformed messages.
import { Metadata, type Client, type ServiceError } from '@grpc/grpc-js';
import { SecureAggregationService } from '@tensorguard/proto';

/** Calls the method at `path` with raw bytes; resolves with the status code (0 = OK) and details. */
export function rawCallPath(client: Client, path: string, body: Buffer, timeoutMs = 300) {
  return new Promise<{ code: number; details: string; body?: Buffer }>((resolve) => {
    client.makeUnaryRequest(
      path,
      (b: Buffer) => b,
      (b: Buffer) => b,
      body,
      new Metadata(),
      { deadline: Date.now() + timeoutMs },
      (err: ServiceError | null, res?: Buffer) =>
        resolve(err ? { code: err.code, details: err.details } : { code: 0, details: '', body: res! }),
    );
  });
}

/** Calls one SecureAggregation method with raw bytes. */
export function rawCall(
  client: Client,
  method: keyof typeof SecureAggregationService,
  body: Buffer,
  timeoutMs = 300,
) {
  return rawCallPath(client, SecureAggregationService[method].path, body, timeoutMs);
}
