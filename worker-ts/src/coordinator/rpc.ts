// The coordinator's gRPC service (real gRPC over HTTP/2 via @grpc/grpc-js). The HE key holder is
// secure-agg's service and speaks its proto (he_key_holder.proto). Messages here are encoded with
// Node's structured-clone codec (v8.serialize: plain objects and typed arrays only, no code or
// prototypes) and every handler validates what it reads before use. Each round-stage call is a long poll: it returns when
// the stage closes (everyone answered or the deadline passed), which is the round barrier.
import * as grpc from '@grpc/grpc-js';
import v8 from 'node:v8';

export const SERVICE_NAME = 'tensorguard.worker.v1.RoundService';

export const METHODS = [
  'Join',
  'NextRound',
  'AdvertiseKeys',
  'ShareKeys',
  'MaskedInput',
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

/** Serves `service` on host:port (0: any free port). Resolves with the bound address. */
export function startRpcServer<M extends string>(
  service: RpcService<M>,
  handlers: Record<M, Handler>,
  host: string,
  port: number,
): Promise<{ server: grpc.Server; address: string }> {
  const server = new grpc.Server(CHANNEL_OPTIONS);
  const impl: grpc.UntypedServiceImplementation = {};
  for (const m of service.methods) {
    impl[m] = (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      handlers[m](call.request).then(
        (res) => cb(null, res),
        (err: unknown) => {
          const code = err instanceof RpcError ? err.code : grpc.status.INTERNAL;
          cb({ code, details: err instanceof Error ? err.message : String(err) });
        },
      );
    };
  }
  server.addService(definitionOf(service), impl);
  return new Promise((resolve, reject) => {
    server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
      if (err) reject(err);
      else resolve({ server, address: `${host}:${bound}` });
    });
  });
}

/** The round service (the coordinator). */
export function startServer(
  handlers: Record<Method, Handler>,
  host: string,
  port: number,
): Promise<{ server: grpc.Server; address: string }> {
  return startRpcServer(ROUND_SERVICE, handlers, host, port);
}

/** A client of one unary service; every call has a deadline. */
export class RpcClient<M extends string> {
  private readonly client: grpc.Client & Record<string, unknown>;
  constructor(service: RpcService<M>, address: string) {
    const Client = grpc.makeGenericClientConstructor(definitionOf(service), service.name);
    this.client = new Client(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS) as grpc.Client &
      Record<string, unknown>;
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
  constructor(address: string) {
    super(ROUND_SERVICE, address);
  }
}
