// The gRPC edge: TrainingService over @grpc/grpc-js with authentication, per-key rate limits,
// deadlines, message size limits, request logs, OpenTelemetry spans and metrics, canonical status
// codes with google.rpc details, plus grpc.health.v1 and server reflection for generic clients.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { context, propagation, SpanKind, SpanStatusCode, type TextMapGetter } from '@opentelemetry/api';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';
import type { Http2Server } from 'node:http2';
import path from 'node:path';
import type { Logger } from 'pino';
import { trainingService as pb, TrainingServiceService } from '@tensorguard/proto';
import { repoRoot } from '../../paths.js';
import type { ApiKeyStore, Scope } from './api-keys.js';
import type { JobBackend } from '../backends/backend.js';
import { ARTIFACT_CHUNK_BYTES } from '../jobs/artifacts.js';
import {
  artifactKindFromProto,
  artifactPartToProto,
  jobEventToProto,
  jobToProto,
  listFilterFromProto,
  privacyReportToProto,
} from './convert.js';
import type { TenantRoots } from '../jobs/confine.js';
import { ApiError } from './errors.js';
import { EventHub, JobMonitor } from '../jobs/monitor.js';
import type { SigningKey } from '../jobs/privacy-report.js';
import { RateLimiter, type BucketOptions } from './rate-limit.js';
import { AccountantPool } from '../jobs/accountant-pool.js';
import { TrainingService, type CallContext } from './service.js';
import type { SpecResolver, SpecValidator } from '../jobs/spec.js';
import type { JobStore } from '../jobs/store.js';
import { meter, tracer } from './telemetry.js';

export const SERVICE_NAME = 'tensorguard.v1.TrainingService';

export interface ApiServerOptions {
  /** host:port; port 0 picks a free one (see ApiServer.port). */
  listen: string;
  apiKeys: ApiKeyStore;
  store: JobStore;
  backend: JobBackend;
  validateSpec: SpecValidator;
  /** Resolves derived spec parameters after validation (driverSpecResolver); default none. */
  resolveSpec?: SpecResolver;
  signingKey: SigningKey;
  logger: Logger;
  /** PEM material; without it the server listens in plaintext (loopback and tests only). */
  tls?: { certChain: Buffer; privateKey: Buffer; clientCa?: Buffer };
  /**
   * host:port of a second, plaintext listener that serves only grpc.health.v1 (the same health
   * states), for probes that cannot speak TLS (the kubelet's gRPC probes). Default: none.
   */
  healthListen?: string;
  /** Largest request and response message in bytes (default 4 MiB). */
  maxMessageBytes?: number;
  /** Default per-key rate limit (default 20 requests/s, burst 40). */
  rateLimit?: BucketOptions;
  /** Concurrent WatchJob and GetJobArtifact streams per key (default 1000). */
  maxStreamsPerKey?: number;
  /** Upper bound on a unary call's time when the client sets a longer deadline or none (default 60 s). */
  maxUnaryMs?: number;
  /**
   * Accountant work (σ calibration, planned ε) runs in this pool's threads, off the event
   * loop. Default: a pool of 2 threads owned (and closed) by the server.
   */
  accountantPool?: AccountantPool;
  /** Accept jobs without noise (σ = 0); default false (FAILED_PRECONDITION). */
  allowNonPrivate?: boolean;
  /** Per-tenant data and state roots that confine a document's paths (see confine.ts). */
  roots?: TenantRoots;
  /** Per-tenant limits on jobs QUEUED or RUNNING and their workers (RESOURCE_EXHAUSTED beyond). */
  limits?: { maxJobsPerTenant: number; maxWorkersPerTenant: number };
  /** Largest artifact GetJobArtifact sends, in bytes (default 2 GiB); larger is RESOURCE_EXHAUSTED. */
  maxArtifactBytes?: number;
}

export interface ApiServer {
  /** The bound port. */
  port: number;
  /** The bound port of the plaintext health listener (healthListen), else null. */
  healthPort: number | null;
  service: TrainingService;
  monitor: JobMonitor;
  /** Stops accepting calls, ends open streams with UNAVAILABLE, stops following jobs. */
  close(): Promise<void>;
}

/** Marks a request whose bytes did not decode; answered INVALID_ARGUMENT by the handler. */
interface Malformed {
  __malformed: string;
}
const isMalformed = (v: unknown): v is Malformed =>
  typeof v === 'object' && v !== null && '__malformed' in (v as Record<string, unknown>);

/**
 * The generated service definition with deserializers that never throw: grpc-js answers a
 * request it cannot decode with INTERNAL, but it is the client's fault (INVALID_ARGUMENT).
 */
function tolerantDefinition(): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, def] of Object.entries(TrainingServiceService)) {
    const d = def as grpc.MethodDefinition<unknown, unknown>;
    out[name] = {
      ...d,
      requestDeserialize: (buf: Buffer) => {
        try {
          return d.requestDeserialize(buf);
        } catch (err) {
          return { __malformed: (err as Error).message };
        }
      },
    };
  }
  return out as grpc.ServiceDefinition;
}

const metadataGetter: TextMapGetter<grpc.Metadata> = {
  keys: (m) => Object.keys(m.getMap()),
  get: (m, k) => {
    const v = m.get(k);
    return v.length === 0 ? undefined : v.map(String);
  },
};

const rpcDuration = meter.createHistogram('rpc.server.duration', {
  description: 'Duration of TrainingService calls (streams: until they end)',
  unit: 'ms',
});
const activeStreams = meter.createUpDownCounter('tensorguard.api.active_streams', {
  description: 'Open WatchJob and GetJobArtifact streams',
});
const eventsSent = meter.createCounter('tensorguard.api.events_sent', {
  description: 'Job events sent on streams',
});
const artifactBytesSent = meter.createCounter('tensorguard.api.artifact_bytes_sent', {
  description: 'Bytes of job artifacts sent by GetJobArtifact',
  unit: 'By',
});

type AnyCall = grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>;

/** Aborted on client cancel, deadline, or after `capMs` (the server's bound). */
function callSignal(call: AnyCall, capMs: number | null): { signal: AbortSignal; dispose: () => void } {
  const ctl = new AbortController();
  const onCancel = () =>
    ctl.abort(new ApiError('CANCELLED', 'the call was cancelled or its deadline passed'));
  call.on('cancelled', onCancel);
  const deadline = call.getDeadline();
  const dl = deadline instanceof Date ? deadline.getTime() : Number(deadline);
  let ms = Number.isFinite(dl) ? Math.max(0, dl - Date.now()) : Infinity;
  if (capMs !== null) ms = Math.min(ms, capMs);
  const timer = Number.isFinite(ms)
    ? setTimeout(
        () => ctl.abort(new ApiError('DEADLINE_EXCEEDED', `deadline of ${Math.round(ms)} ms passed`)),
        ms,
      )
    : null;
  return {
    signal: ctl.signal,
    dispose: () => {
      if (timer) clearTimeout(timer);
      call.removeListener('cancelled', onCancel);
    },
  };
}

function protoDefinitions(): protoLoader.PackageDefinition {
  const protoRoot = path.join(repoRoot(), 'proto');
  return protoLoader.loadSync(
    [path.join(protoRoot, 'tensorguard', 'v1', 'training_service.proto'), healthProtoPath],
    { includeDirs: [protoRoot, path.dirname(healthProtoPath)] },
  );
}

/** "ipv4:10.0.0.7:51234" -> "ipv4:10.0.0.7": buckets per address, not per connection. */
export function peerAddress(peer: string): string {
  const m = /^(ipv4:[^:]+|ipv6:\[[^\]]*\]|ipv6:.*?)(?::\d+)?$/.exec(peer);
  return m ? m[1]! : peer;
}

/**
 * Node's HTTP/2 layer keeps only the first of repeated `authorization` headers (a
 * single-value header), so grpc-js would see one key where the client sent two. This listener
 * runs before grpc-js's on every stream, reads the raw header list, and hands grpc-js every
 * value, which authorize() then refuses. grpc-js keeps its HTTP/2 servers in a private field;
 * when a version moves it, the server refuses to start rather than run without the check.
 */
function guardDuplicateAuthorization(server: grpc.Server): void {
  const servers = (server as unknown as { http2Servers?: Map<unknown, unknown> }).http2Servers;
  if (!(servers instanceof Map) || servers.size === 0) {
    throw new Error(
      'cannot install the duplicate-authorization check: @grpc/grpc-js no longer exposes its HTTP/2 ' +
        'servers (http2Servers); update guardDuplicateAuthorization in driver/src/api/server.ts',
    );
  }
  for (const h2 of servers.keys()) {
    (h2 as Http2Server).prependListener(
      'stream',
      (_stream: unknown, headers: Record<string, unknown>, _flags: number, raw: string[] | undefined) => {
        if (!Array.isArray(raw)) return;
        const values: string[] = [];
        for (let i = 0; i + 1 < raw.length; i += 2) {
          if (raw[i]!.toLowerCase() === 'authorization') values.push(raw[i + 1]!);
        }
        if (values.length > 1) headers.authorization = values;
      },
    );
  }
}

export async function startApiServer(o: ApiServerOptions): Promise<ApiServer> {
  const log = o.logger;
  const maxMessageBytes = o.maxMessageBytes ?? 4 * 1024 * 1024;
  const limiter = new RateLimiter(o.rateLimit ?? { perSecond: 20, burst: 40 });
  const maxStreams = o.maxStreamsPerKey ?? 1000;
  const maxUnaryMs = o.maxUnaryMs ?? 60_000;
  const streamsByKey = new Map<string, number>();
  const openStreams = new Set<{ end: (err: ApiError) => void }>();

  const ownPool = o.accountantPool === undefined;
  const pool = o.accountantPool ?? new AccountantPool();
  const hub = new EventHub();
  const monitor = new JobMonitor(o.store, o.backend, hub, log.child({ component: 'monitor' }));
  const service = new TrainingService({
    store: o.store,
    backend: o.backend,
    monitor,
    validateSpec: o.validateSpec,
    ...(o.resolveSpec ? { resolveSpec: o.resolveSpec } : {}),
    signingKey: o.signingKey,
    planEpsilon: pool.plannedEpsilon,
    allowNonPrivate: o.allowNonPrivate ?? false,
    ...(o.roots ? { roots: o.roots } : {}),
    ...(o.limits ? { limits: o.limits } : {}),
    ...(o.maxArtifactBytes !== undefined ? { maxArtifactBytes: o.maxArtifactBytes } : {}),
  });

  interface Authed {
    tenant: string;
    keyId: string;
  }

  async function authorize(call: AnyCall, scope: Scope): Promise<Authed> {
    const values = call.metadata.get('authorization');
    // Two keys are refused, not "first wins" (see guardDuplicateAuthorization).
    if (values.length > 1) {
      throw new ApiError('UNAUTHENTICATED', 'send exactly one authorization header', {
        errorInfo: { reason: 'API_KEY_DUPLICATE', domain: 'tensorguard.dev', metadata: {} },
      });
    }
    const res = await o.apiKeys.authenticate(
      values[0] === undefined ? undefined : String(values[0]),
      peerAddress(call.getPeer()),
    );
    if (!res.ok && res.reason === 'throttled') {
      throw new ApiError(
        'RESOURCE_EXHAUSTED',
        `too many unrecognised API keys from this address; retry in ${res.retryMs} ms`,
        {
          retryDelayMs: res.retryMs,
          errorInfo: { reason: 'AUTH_RATE_LIMITED', domain: 'tensorguard.dev', metadata: {} },
        },
      );
    }
    if (!res.ok) {
      const why = {
        missing: 'missing API key: send metadata "authorization: Bearer <key>"',
        malformed: 'malformed authorization metadata: expected "Bearer <key>"',
        unknown: 'API key not recognised',
        revoked: 'API key revoked; ask the operator for a new one',
      }[res.reason];
      throw new ApiError('UNAUTHENTICATED', why, {
        errorInfo: { reason: `API_KEY_${res.reason.toUpperCase()}`, domain: 'tensorguard.dev', metadata: {} },
      });
    }
    const e = res.entry;
    if (!e.scopes.includes(scope)) {
      throw new ApiError('PERMISSION_DENIED', `API key "${e.id}" lacks the scope ${scope}`, {
        errorInfo: { reason: 'MISSING_SCOPE', domain: 'tensorguard.dev', metadata: { scope } },
      });
    }
    const waitMs = limiter.take(e.id, e.rateLimit);
    if (waitMs > 0) {
      throw new ApiError(
        'RESOURCE_EXHAUSTED',
        `rate limit of API key "${e.id}" exceeded; retry in ${waitMs} ms`,
        {
          retryDelayMs: waitMs,
          errorInfo: { reason: 'RATE_LIMITED', domain: 'tensorguard.dev', metadata: {} },
        },
      );
    }
    return { tenant: e.tenant, keyId: e.id };
  }

  function observe(method: string, call: AnyCall) {
    const start = performance.now();
    const parent = propagation.extract(context.active(), call.metadata, metadataGetter);
    const span = tracer.startSpan(
      `${SERVICE_NAME}/${method}`,
      {
        kind: SpanKind.SERVER,
        attributes: { 'rpc.system': 'grpc', 'rpc.service': SERVICE_NAME, 'rpc.method': method },
      },
      parent,
    );
    let tenant = '';
    let keyId = '';
    return {
      setCaller(a: Authed) {
        tenant = a.tenant;
        keyId = a.keyId;
        span.setAttribute('tensorguard.tenant', tenant);
      },
      finish(err: ApiError | null, extra: Record<string, unknown> = {}) {
        const latencyMs = performance.now() - start;
        const code = err ? err.code : 'OK';
        span.setAttribute('rpc.grpc.status_code', err ? err.grpcCode : 0);
        if (err) span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
        span.end();
        rpcDuration.record(latencyMs, {
          'rpc.method': method,
          'rpc.grpc.status_code': err ? err.grpcCode : 0,
        });
        const fields = { method, code, latencyMs: Number(latencyMs.toFixed(2)), tenant, keyId, ...extra };
        if (err?.code === 'INTERNAL') log.error({ ...fields, err: err.cause ?? err }, 'request failed');
        // A cause the client's message leaves out (the cluster's own text): the log keeps it.
        else if (err?.cause !== undefined) log.warn({ ...fields, err: err.cause }, 'request failed');
        else log.info(fields, 'request');
      },
    };
  }

  function unary<Req, Res>(
    method: string,
    scope: Scope,
    fn: (ctx: CallContext, req: Req) => Promise<Res> | Res,
  ): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      const obs = observe(method, call as AnyCall);
      const { signal, dispose } = callSignal(call as AnyCall, maxUnaryMs);
      const run = async (): Promise<Res> => {
        const who = await authorize(call as AnyCall, scope);
        obs.setCaller(who);
        if (isMalformed(call.request)) {
          throw ApiError.invalidArgument([
            { field: '(message)', description: `does not decode: ${call.request.__malformed}` },
          ]);
        }
        const ctx = { tenant: who.tenant, signal };
        // The handler runs until done, but the answer honours the deadline.
        return await Promise.race([
          Promise.resolve(fn(ctx, call.request)),
          new Promise<never>((_, reject) => {
            const fail = () =>
              reject(
                signal.reason instanceof ApiError ? signal.reason : new ApiError('CANCELLED', 'cancelled'),
              );
            if (signal.aborted) fail();
            else signal.addEventListener('abort', fail, { once: true });
          }),
        ]);
      };
      run().then(
        (res) => {
          dispose();
          obs.finish(null);
          callback(null, res);
        },
        (err: unknown) => {
          dispose();
          const e = ApiError.from(err);
          obs.finish(e);
          callback(e.toServiceError() as grpc.ServiceError);
        },
      );
    };
  }

  /**
   * A server-streaming handler: authentication, the per-key limit on open streams, the call's
   * deadline (no server cap: a stream lasts as long as the client wants), backpressure in
   * `write`, and the final status. `fn` writes its messages and returns when the stream is done;
   * `stats` lands in the request log line.
   */
  function serverStream<Req, Res>(
    method: string,
    scope: Scope,
    fn: (
      ctx: CallContext,
      req: Req,
      write: (res: Res) => Promise<void>,
      stats: Record<string, number>,
    ) => Promise<void>,
  ): grpc.handleServerStreamingCall<Req, Res> {
    return (call) => {
      const obs = observe(method, call as AnyCall);
      const { signal, dispose } = callSignal(call as AnyCall, null);
      const stats: Record<string, number> = {};
      let ended = false;
      let keyId = '';
      const release = () => {
        ended = true;
        openStreams.delete(handle);
        if (keyId) streamsByKey.set(keyId, (streamsByKey.get(keyId) ?? 1) - 1);
        dispose();
      };
      const handle = {
        end: (err: ApiError) => {
          if (ended) return;
          release();
          obs.finish(err.code === 'CANCELLED' && call.cancelled ? null : err, stats);
          // grpc-js turns an 'error' event on a server stream into the call's status.
          if (!call.cancelled)
            call.emit('error', Object.assign(new Error(err.message), err.toServiceError()));
        },
      };
      const write = async (res: Res): Promise<void> => {
        if (ended || signal.aborted) {
          throw signal.reason instanceof ApiError ? signal.reason : new ApiError('CANCELLED', 'cancelled');
        }
        if (call.write(res)) return;
        await new Promise<void>((resolve) => {
          const done = () => {
            call.removeListener('drain', done);
            signal.removeEventListener('abort', done);
            resolve();
          };
          call.on('drain', done);
          signal.addEventListener('abort', done, { once: true });
        });
      };
      const run = async () => {
        const who = await authorize(call as AnyCall, scope);
        obs.setCaller(who);
        if (isMalformed(call.request)) {
          throw ApiError.invalidArgument([
            { field: '(message)', description: `does not decode: ${call.request.__malformed}` },
          ]);
        }
        const open = streamsByKey.get(who.keyId) ?? 0;
        if (open >= maxStreams) {
          throw new ApiError(
            'RESOURCE_EXHAUSTED',
            `API key "${who.keyId}" has ${open} open WatchJob/GetJobArtifact streams (limit ${maxStreams})`,
          );
        }
        keyId = who.keyId;
        streamsByKey.set(keyId, open + 1);
        openStreams.add(handle);
        activeStreams.add(1, { 'rpc.method': method });
        try {
          await fn({ tenant: who.tenant, signal }, call.request, write, stats);
        } finally {
          activeStreams.add(-1, { 'rpc.method': method });
        }
      };
      run().then(
        () => {
          if (ended) return;
          if (signal.aborted)
            return handle.end(
              signal.reason instanceof ApiError ? signal.reason : new ApiError('CANCELLED', 'cancelled'),
            );
          release();
          obs.finish(null, stats);
          call.end();
        },
        (err: unknown) => handle.end(ApiError.from(err)),
      );
    };
  }

  const watchJob = serverStream<pb.WatchJobRequest, pb.WatchJobResponse>(
    'WatchJob',
    'jobs.read',
    async (ctx, req, write, stats) => {
      stats.eventsSent = 0;
      for await (const e of service.watch(ctx, req.jobId, req.afterEventId)) {
        await write({ event: jobEventToProto(e) });
        stats.eventsSent += 1;
        eventsSent.add(1);
      }
    },
  );

  const getJobArtifact = serverStream<pb.GetJobArtifactRequest, pb.GetJobArtifactResponse>(
    'GetJobArtifact',
    'jobs.read',
    async (ctx, req, write, stats) => {
      const kind = artifactKindFromProto(req.kind);
      if (kind === null) {
        throw ApiError.invalidArgument([
          {
            field: 'kind',
            description:
              req.kind === pb.ArtifactKind.ARTIFACT_KIND_UNSPECIFIED
                ? 'is required: ARTIFACT_KIND_CHECKPOINT, _ADAPTER, _REPORT, _METRICS or _PRIVACY_REPORT'
                : `unknown artifact kind ${req.kind}; use ARTIFACT_KIND_CHECKPOINT, _ADAPTER, _REPORT, _METRICS or _PRIVACY_REPORT`,
          },
        ]);
      }
      const artifact = await service.artifact(ctx, req.jobId, kind);
      stats.files = artifact.files.length;
      stats.bytesSent = 0;
      try {
        // Below the message limit with room for the framing, and never above 1 MiB.
        const chunk = Math.max(1, Math.min(ARTIFACT_CHUNK_BYTES, maxMessageBytes - 64));
        for await (const part of artifact.parts(ctx.signal, chunk)) {
          await write(artifactPartToProto(part));
          if (part.type === 'chunk') {
            stats.bytesSent += part.data.byteLength;
            artifactBytesSent.add(part.data.byteLength, { 'tensorguard.artifact.kind': kind });
          }
        }
      } finally {
        await artifact.close();
      }
    },
  );

  const handlers: pb.TrainingServiceServer = {
    submitJob: unary('SubmitJob', 'jobs.write', async (ctx, req: pb.SubmitJobRequest) => {
      const res = await service.submit(ctx, {
        requestId: req.requestId,
        spec: req.spec,
        validateOnly: req.validateOnly,
      });
      return { job: res.job ? jobToProto(res.job) : undefined, created: res.created };
    }),
    getJob: unary('GetJob', 'jobs.read', (ctx, req: pb.GetJobRequest) => ({
      job: jobToProto(service.get(ctx, req.jobId)),
    })),
    listJobs: unary('ListJobs', 'jobs.read', (ctx, req: pb.ListJobsRequest) => {
      const { filter, unknownStates } = listFilterFromProto(req);
      if (unknownStates.length > 0) {
        throw ApiError.invalidArgument(
          req.states
            .map((s, i) => ({ s, i }))
            .filter(({ s }) => unknownStates.includes(s))
            .map(({ s, i }) => ({
              field: `states[${i}]`,
              description: `unknown job state ${s}; use JOB_STATE_QUEUED, _RUNNING, _SUCCEEDED, _FAILED or _CANCELLED`,
            })),
        );
      }
      const res = service.list(ctx, { pageSize: req.pageSize, pageToken: req.pageToken, filter });
      return { jobs: res.jobs.map(jobToProto), nextPageToken: res.nextPageToken };
    }),
    cancelJob: unary('CancelJob', 'jobs.write', async (ctx, req: pb.CancelJobRequest) => ({
      job: jobToProto(await service.cancel(ctx, req.jobId, req.reason)),
    })),
    watchJob,
    getJobArtifact,
    getPrivacyReport: unary(
      'GetPrivacyReport',
      'jobs.read',
      async (ctx, req: pb.GetPrivacyReportRequest) => ({
        report: privacyReportToProto(await service.privacyReport(ctx, req.jobId)),
      }),
    ),
  };

  const server = new grpc.Server({
    'grpc.max_receive_message_length': maxMessageBytes,
    'grpc.max_send_message_length': maxMessageBytes,
    'grpc.max_concurrent_streams': 2000,
    'grpc.keepalive_time_ms': 60_000,
    'grpc.keepalive_timeout_ms': 20_000,
    'grpc.http2.min_ping_interval_without_data_ms': 10_000,
  });
  server.addService(tolerantDefinition(), handlers as unknown as grpc.UntypedServiceImplementation);
  const health = new HealthImplementation({ '': 'NOT_SERVING', [SERVICE_NAME]: 'NOT_SERVING' });
  health.addToServer(server);
  new ReflectionService(protoDefinitions()).addToServer(server);

  const creds = o.tls
    ? grpc.ServerCredentials.createSsl(
        o.tls.clientCa ?? null,
        [{ cert_chain: o.tls.certChain, private_key: o.tls.privateKey }],
        o.tls.clientCa !== undefined,
      )
    : grpc.ServerCredentials.createInsecure();
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(o.listen, creds, (err, p) => (err ? reject(err) : resolve(p))),
  );
  guardDuplicateAuthorization(server);
  // Health only, plaintext, same states: a probe learns whether the server serves and nothing
  // else (no TrainingService, no reflection), so it needs neither TLS nor an API key.
  let healthServer: grpc.Server | null = null;
  let healthPort: number | null = null;
  if (o.healthListen !== undefined) {
    healthServer = new grpc.Server({ 'grpc.max_receive_message_length': 64 * 1024 });
    health.addToServer(healthServer);
    try {
      healthPort = await new Promise<number>((resolve, reject) =>
        healthServer!.bindAsync(o.healthListen!, grpc.ServerCredentials.createInsecure(), (err, p) =>
          err ? reject(err) : resolve(p),
        ),
      );
    } catch (err) {
      server.forceShutdown();
      healthServer.forceShutdown();
      throw new Error(`cannot listen on ${o.healthListen} (--health-listen): ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
  monitor.resumeAll();
  health.setStatus('', 'SERVING');
  health.setStatus(SERVICE_NAME, 'SERVING');

  let closing: Promise<void> | undefined;
  return {
    port,
    healthPort,
    service,
    monitor,
    close() {
      closing ??= (async () => {
        health.setStatus('', 'NOT_SERVING');
        health.setStatus(SERVICE_NAME, 'NOT_SERVING');
        for (const s of [...openStreams]) {
          s.end(
            new ApiError(
              'UNAVAILABLE',
              'the server is shutting down; reconnect and resume with after_event_id',
            ),
          );
        }
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            server.forceShutdown();
            resolve();
          }, 5000);
          server.tryShutdown(() => {
            clearTimeout(t);
            resolve();
          });
        });
        await monitor.close();
        if (ownPool) await pool.close();
        healthServer?.forceShutdown();
      })();
      return closing;
    },
  };
}
