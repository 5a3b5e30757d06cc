// What the aggregator and the key holder servers share at the gRPC edge: service definitions whose
// requests stay raw bytes (decoded inside the handler, so undecodable bytes get INVALID_ARGUMENT
// with a reason rather than a generic error), one unary handler that maps every domain error to a
// status (status.ts) so nothing a client sends can throw out of a handler, TLS credentials, and
// graceful shutdown.
import {
  Client,
  credentials,
  Metadata,
  ServerCredentials,
  type Server,
  status,
  type ServiceError,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServiceDefinition,
  type UntypedHandleCall,
} from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { SecAggError } from '../index.js';
import { fromStatus, toStatus } from './status.js';

/** PEM material; with certChain and privateKey the client authenticates itself (mTLS). */
export interface ClientTlsOptions {
  rootCa: Buffer;
  certChain?: Buffer;
  privateKey?: Buffer;
  /** Expected server name when it differs from the address's host (e.g. 'localhost'). */
  serverNameOverride?: string;
}

/** PEM material for TLS; with clientCa set, clients must present a certificate it signed (mTLS). */
export interface ServerTlsOptions {
  certChain: Buffer;
  privateKey: Buffer;
  /** CA that signs client certificates; when set, mutual TLS is required. */
  clientCa?: Buffer;
}

/** Each HTTP/2 session's (so each TLS connection's) peer common name, read once. */
const sessionPeers = new WeakMap<object, string | undefined>();

/**
 * The HTTP/2 session a call arrived on. grpc-js does not expose it: it is read from the call
 * objects' fields as grpc-js 1.x lays them out (ServerUnaryCall.call → ServerInterceptingCall
 * .nextCall … → BaseServerInterceptingCall.stream.session); undefined where that layout is absent,
 * and then every call reads the certificate itself (transport.test.ts notices that).
 */
function sessionOf(call: ServerUnaryCall<Buffer, Buffer>): object | undefined {
  type Inner = { nextCall?: Inner; stream?: { session?: unknown } };
  let inner = (call as unknown as { call?: Inner }).call;
  for (let hops = 0; inner && !inner.stream && hops < 16; hops++) inner = inner.nextCall;
  const session = inner?.stream?.session;
  return typeof session === 'object' && session !== null ? session : undefined;
}

/**
 * The subject common name of the caller's TLS client certificate, when it presented one. Read once
 * per connection: grpc-js's getAuthContext() has Node build the whole certificate object (all
 * three fingerprints, the public key, every name) on each call, about 0.1 ms of the aggregator's
 * event loop per call and some twenty calls a round. A TLS connection's peer certificate is fixed by
 * its handshake (HTTP/2 forbids renegotiation, RFC 9113 §9.2.1), so the cached name is the one the
 * peer proved.
 */
export function peerCommonName(call: ServerUnaryCall<Buffer, Buffer>): string | undefined {
  const session = sessionOf(call);
  if (session && sessionPeers.has(session)) return sessionPeers.get(session);
  const cn = call.getAuthContext()?.sslPeerCertificate?.subject?.CN as string | string[] | undefined;
  const name = typeof cn === 'string' ? cn : undefined;
  if (session) sessionPeers.set(session, name);
  return name;
}

/** The job's name for the aggregator: its certificate's CN and DNS SAN, whatever address it has. */
export const AGGREGATOR_NAME = 'tensorguard-aggregator';

/** `service` with requests and responses left as raw bytes. */
export function rawDefinition(service: Record<string, object>): ServiceDefinition {
  const out: Record<string, unknown> = {};
  for (const [name, def] of Object.entries(service)) {
    out[name] = {
      ...def,
      requestDeserialize: (b: Buffer) => b,
      responseSerialize: (b: Buffer) => b,
    };
  }
  return out as ServiceDefinition;
}

/** A unary handler: decode, `handle`, encode; refusals become a status and a reason. */
export function unaryHandler<Req, Res>(
  log: Logger,
  method: string,
  req: { decode(b: Uint8Array): Req },
  res: { encode(m: Res): { finish(): Uint8Array } },
  handle: (r: Req, call: ServerUnaryCall<Buffer, Buffer>) => Promise<Res>,
): UntypedHandleCall {
  return (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => {
    let decoded: Req;
    try {
      decoded = req.decode(call.request);
    } catch (err) {
      callback({
        code: status.INVALID_ARGUMENT,
        details: `cannot decode the ${method} request: ${(err as Error).message}`,
      });
      return;
    }
    let pending: Promise<Res>;
    try {
      pending = handle(decoded, call);
    } catch (err) {
      pending = Promise.reject(err);
    }
    pending.then(
      (r) => callback(null, Buffer.from(res.encode(r).finish())),
      (err: unknown) => {
        const s = toStatus(err);
        if (s.code === status.INTERNAL) log.error({ err, method }, 'handler failed');
        else log.debug({ method, code: s.code, details: s.details }, 'refused');
        callback({ code: s.code, details: s.details });
      },
    );
  };
}

export function serverCredentials(tls: ServerTlsOptions | undefined): ServerCredentials {
  return tls
    ? ServerCredentials.createSsl(
        tls.clientCa ?? null,
        [{ cert_chain: tls.certChain, private_key: tls.privateKey }],
        tls.clientCa !== undefined,
      )
    : ServerCredentials.createInsecure();
}

/** Largest HTTP/2 receive window a client asks for (per stream and connection), bytes. */
const MAX_FLOW_CONTROL_WINDOW = 16 << 20;

/**
 * A channel to `address` with TLS when given, and both message limits set to maxMessageBytes. The
 * caller keeps it for its whole session: grpc-js connects (and, with TLS, handshakes) once and
 * multiplexes every call over that HTTP/2 connection, reconnecting only after a failure.
 * The receive window is raised from HTTP/2's 64 KiB to the message limit (at most 16 MiB) so that a
 * response larger than 64 KiB (the model in GetModel, the roster of a large round) arrives without
 * the sender stalling mid-message for a WINDOW_UPDATE. No keepalive pings (grpc-js's default):
 * every call, AwaitRound's long poll included, has a deadline, which is what finds a dead peer.
 */
export function makeClient(
  address: string,
  tls: ClientTlsOptions | undefined,
  maxMessageBytes: number,
): Client {
  const creds = tls
    ? credentials.createSsl(tls.rootCa, tls.privateKey ?? null, tls.certChain ?? null)
    : credentials.createInsecure();
  return new Client(address, creds, {
    'grpc.max_receive_message_length': maxMessageBytes,
    'grpc.max_send_message_length': maxMessageBytes,
    'grpc-node.flow_control_window': Math.max(65_535, Math.min(maxMessageBytes, MAX_FLOW_CONTROL_WINDOW)),
    ...(tls?.serverNameOverride ? { 'grpc.ssl_target_name_override': tls.serverNameOverride } : {}),
  });
}

/** One unary call with a deadline; rejects with the SecAggError that fromStatus makes of a status. */
export function callUnary<Req, Res>(
  client: Client,
  def: { path: string; requestSerialize: (r: Req) => Buffer; responseDeserialize: (b: Buffer) => Res },
  req: Req,
  timeoutMs: number,
  what: string,
  round?: number,
): Promise<Res> {
  return new Promise<Res>((resolve, reject: (e: SecAggError) => void) => {
    client.makeUnaryRequest(
      def.path,
      def.requestSerialize,
      def.responseDeserialize,
      req,
      new Metadata(),
      { deadline: Date.now() + timeoutMs },
      (err: ServiceError | null, res?: Res) => {
        if (err || res === undefined) reject(fromStatus(err!, what, round));
        else resolve(res);
      },
    );
  });
}

/** Stops accepting calls and waits up to `graceMs` for calls in flight, then cuts them off. */
export function shutdownGracefully(server: Server, graceMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const force = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}
