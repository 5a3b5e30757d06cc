// The coordinator's gRPC service (real gRPC over HTTP/2 via @grpc/grpc-js). The HE key holder is
// secure-agg's service and speaks its proto (he_key_holder.proto). Messages here are encoded with
// Node's structured-clone codec (v8.serialize: plain objects and typed arrays only, no code or
// prototypes) and every handler validates what it reads before use. Each round-stage call is a long poll: it returns when
// the stage closes (everyone answered or the deadline passed), which is the round barrier.
import * as grpc from '@grpc/grpc-js';
import fs from 'node:fs';
import path from 'node:path';
import v8 from 'node:v8';

export const SERVICE_NAME = 'tensorguard.worker.v1.RoundService';

export const METHODS = [
  'Join',
  'NextRound',
  'AdvertiseKeys',
  'ShareKeys',
  'MaskedInput',
  'Attest',
  'Unmask',
  'EncryptedInput',
] as const;
export type Method = (typeof METHODS)[number];

/** A unary service: its full name and method names. */
export interface RpcService<M extends string> {
  name: string;
  methods: readonly M[];
}

export const ROUND_SERVICE: RpcService<Method> = { name: SERVICE_NAME, methods: METHODS };

const encode = (v: unknown): Buffer => v8.serialize(v);
const decode = (b: Buffer): unknown => v8.deserialize(b);

/** Bytes of a message as this service encodes it (the payload, before gRPC framing and TLS). */
export const encodedSize = (v: unknown): number => (v === undefined ? 0 : encode(v).byteLength);

function definitionOf<M extends string>(service: RpcService<M>): grpc.ServiceDefinition {
  return Object.fromEntries(
    service.methods.map((m) => [
      m,
      {
        path: `/${service.name}/${m}`,
        requestStream: false,
        responseStream: false,
        requestSerialize: encode,
        requestDeserialize: decode,
        responseSerialize: encode,
        responseDeserialize: decode,
      },
    ]),
  );
}

export const serviceDefinition: grpc.ServiceDefinition = definitionOf(ROUND_SERVICE);

/** Thrown by handlers; carries the gRPC status to answer with. */
export class RpcError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

export type Handler = (req: unknown) => Promise<unknown>;

const CHANNEL_OPTIONS = {
  'grpc.max_receive_message_length': 512 * 1024 * 1024,
  'grpc.max_send_message_length': 512 * 1024 * 1024,
};

/**
 * Mutual TLS with the job's identities (ray-cluster's pki.py writes them): `ca` signs every party's
 * certificate; `cert`/`key` are this party's. PEM bytes.
 */
export interface TlsIdentity {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/** The name every worker verifies on the aggregator's certificate, whatever address it dials. */
export const AGGREGATOR_TLS_NAME = 'tensorguard-aggregator';

/** Reads ca.pem, cert.pem and key.pem from `dir` (the `--tls-dir` of both programs). */
export function readTlsDir(dir: string): TlsIdentity {
  const read = (f: string) => {
    try {
      return fs.readFileSync(path.join(dir, f));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      throw new Error(`--tls-dir ${dir}: cannot read ${f} (${code})`);
    }
  };
  return { ca: read('ca.pem'), cert: read('cert.pem'), key: read('key.pem') };
}

/**
 * With TLS, who may send a request: the edge calls it with the peer certificate's common name
 * (the worker's identity) before the handler; it throws RpcError to refuse.
 */
export type PeerCheck = (method: string, req: unknown, peer: string | undefined) => void;

/**
 * Serves `service` on host:port (0: any free port). Resolves with the bound address. With `tls`
 * the server speaks TLS only and requires a client certificate signed by `tls.identity.ca`, and
 * `peerCheck` sees each request with its peer's certificate name before the handler.
 */
export function startRpcServer<M extends string>(
  service: RpcService<M>,
  handlers: Record<M, Handler>,
  host: string,
  port: number,
  tls?: { identity: TlsIdentity; peerCheck: PeerCheck },
): Promise<{ server: grpc.Server; address: string }> {
  const server = new grpc.Server(CHANNEL_OPTIONS);
  const impl: grpc.UntypedServiceImplementation = {};
  for (const m of service.methods) {
    impl[m] = (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      const fail = (err: unknown) => {
        const code = err instanceof RpcError ? err.code : grpc.status.INTERNAL;
        cb({ code, details: err instanceof Error ? err.message : String(err) });
      };
      try {
        if (tls) {
          const cn: unknown = call.getAuthContext()?.sslPeerCertificate?.subject?.CN;
          tls.peerCheck(m, call.request, typeof cn === 'string' ? cn : undefined);
        }
      } catch (err) {
        fail(err);
        return;
      }
      handlers[m](call.request).then((res) => cb(null, res), fail);
    };
  }
  server.addService(definitionOf(service), impl);
  const creds = tls
    ? grpc.ServerCredentials.createSsl(
        tls.identity.ca,
        [{ private_key: tls.identity.key, cert_chain: tls.identity.cert }],
        true,
      )
    : grpc.ServerCredentials.createInsecure();
  return new Promise((resolve, reject) => {
    server.bindAsync(`${host}:${port}`, creds, (err, bound) => {
      if (err) reject(err);
      else resolve({ server, address: `${host.includes(':') ? `[${host}]` : host}:${bound}` });
    });
  });
}

/**
 * The worker identity rule of the round service: a request's workerId (and workerIndex, where the
 * message has one) must be the one in the peer's certificate, `worker-<index>`. A refusal is
 * reported to `log` with the peer's name and answered PERMISSION_DENIED.
 */
export function workerPeerCheck(log: (peer: string | undefined, reason: string) => void): PeerCheck {
  return (method, req, peer) => {
    const r = (req ?? {}) as { workerId?: unknown; workerIndex?: unknown };
    let reason: string | undefined;
    if (peer === undefined || !/^worker-\d+$/.test(peer)) {
      const named = peer === undefined ? 'no worker' : JSON.stringify(peer);
      reason = `its certificate names ${named}, not a worker of this job`;
    } else if (r.workerId !== peer) {
      reason = `it sent workerId ${JSON.stringify(r.workerId)} with the certificate of ${peer}`;
    } else if (r.workerIndex !== undefined && `worker-${String(r.workerIndex)}` !== peer) {
      reason = `it sent workerIndex ${JSON.stringify(r.workerIndex)} with the certificate of ${peer}`;
    }
    if (reason === undefined) return;
    log(peer, `${method} refused: ${reason}`);
    throw new RpcError(grpc.status.PERMISSION_DENIED, `${method} refused: ${reason}`);
  };
}

/** The round service (the coordinator). */
export function startServer(
  handlers: Record<Method, Handler>,
  host: string,
  port: number,
  tls?: { identity: TlsIdentity; peerCheck: PeerCheck },
): Promise<{ server: grpc.Server; address: string }> {
  return startRpcServer(ROUND_SERVICE, handlers, host, port, tls);
}

/** A client of one unary service; every call has a deadline. */
export class RpcClient<M extends string> {
  private readonly client: grpc.Client & Record<string, unknown>;
  /** With `tls`, dials with that client certificate and verifies the server as `tlsServerName`. */
  constructor(
    service: RpcService<M>,
    address: string,
    tls?: TlsIdentity,
    tlsServerName = AGGREGATOR_TLS_NAME,
  ) {
    const Client = grpc.makeGenericClientConstructor(definitionOf(service), service.name);
    const creds = tls
      ? grpc.credentials.createSsl(tls.ca, tls.key, tls.cert)
      : grpc.credentials.createInsecure();
    const options = tls
      ? { ...CHANNEL_OPTIONS, 'grpc.ssl_target_name_override': tlsServerName }
      : CHANNEL_OPTIONS;
    this.client = new Client(address, creds, options) as grpc.Client & Record<string, unknown>;
  }
  /** One call with a deadline (ms from now). Rejects with the grpc ServiceError. */
  call<T>(method: M, req: unknown, deadlineMs: number): Promise<T> {
    const fn = this.client[method] as (
      req: unknown,
      md: grpc.Metadata,
      opts: grpc.CallOptions,
      cb: (err: grpc.ServiceError | null, res: unknown) => void,
    ) => void;
    return new Promise((resolve, reject) => {
      fn.call(this.client, req, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) =>
        err ? reject(err) : resolve(res as T),
      );
    });
  }
  close(): void {
    this.client.close();
  }
}

/** The round service's client (workers). */
export class RoundServiceClient extends RpcClient<Method> {
  constructor(address: string, tls?: TlsIdentity) {
    super(ROUND_SERVICE, address, tls);
  }
}
