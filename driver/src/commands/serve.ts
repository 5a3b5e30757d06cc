// `tensorguard serve`: the gRPC TrainingService for other services (docs/api.md).
import fs from 'node:fs';
import path from 'node:path';
import { destination, pino } from 'pino';
import { ApiKeyStore, generateKey, hashKeyScrypt, hashKeySha256, keyProblem } from '../api/edge/api-keys.js';
import { AccountantPool } from '../api/jobs/accountant-pool.js';
import { DEFAULT_MAX_ARTIFACT_BYTES } from '../api/jobs/artifacts.js';
import type { JobBackend } from '../api/backends/backend.js';
import { LocalProcessBackend } from '../api/testing/local-process-backend.js';
import { SimulatedBackend } from '../api/testing/simulated-backend.js';
import { loadOrCreateSigningKey } from '../api/jobs/privacy-report.js';
import { createRayJobBackend, RayJobBackend } from '../api/backends/ray-backend.js';
import { startApiServer } from '../api/edge/server.js';
import { driverSpecValidator } from '../api/jobs/spec.js';
import { RayError } from '../ray/errors.js';
import { JobStore } from '../api/jobs/store.js';
import { startTelemetry } from '../api/edge/telemetry.js';
import { type Command, type Io, UsageError } from './types.js';

const usage = `usage: tensorguard serve --listen HOST:PORT --api-keys FILE [options]
       tensorguard serve --hash-key [--scrypt]     (reads a key on stdin, prints its hash)
       tensorguard serve --generate-key            (prints a new key and its hash)

Serves tensorguard.v1.TrainingService over gRPC, with grpc.health.v1 and server reflection.

options:
  --listen HOST:PORT        address to listen on (required; port 0 picks one, printed at start)
  --api-keys FILE           YAML file of hashed API keys and their tenants (required; docs/api.md);
                            re-read on SIGHUP
  --address RAY_URL         Ray dashboard URL to submit to (default: RAY_ADDRESS, else a private local
                            Ray head that serve starts and stops; jobs outlive a restart only on a
                            cluster that outlives the server)
  --db PATH                 job database (SQLite; default .tensorguard/api/jobs.db). One server per file
  --signing-key FILE        Ed25519 key (PKCS#8 PEM) that signs privacy reports; created when missing
                            (default: signing-key.pem next to --db)
  --tls-cert FILE           PEM certificate chain; with --tls-key enables TLS
  --tls-key FILE            PEM private key
  --tls-client-ca FILE      PEM CA bundle: require client certificates signed by it (mutual TLS)
  --health-listen HOST:PORT also serve grpc.health.v1 alone, in plaintext, on this address (for
                            probes that cannot speak TLS, e.g. the kubelet's gRPC probes)
  --max-message-bytes N     largest request/response message (default 4194304)
  --rate-limit N            default requests per second per API key (default 20)
  --rate-burst N            default burst per API key (default 40)
  --backend ray|local-process|simulated
                            where jobs run (default ray). local-process runs each job as a local Node
                            process printing synthetic rounds (tests); simulated runs them as timers in
                            the server (load benchmarks). Neither trains anything
  --local-round-ms N        local-process and simulated: milliseconds per round (default 200)
  --data-root DIR           per-tenant readable data: a job's paths (dataset.path, testPath,
                            model.baseCheckpoint, model.path, model.initAdapter) must lie in
                            DIR/<tenant>/; relative ones resolve
                            there (default: TENSORGUARD_STATE_DIR/data, else .tensorguard/data)
  --state-root DIR          per-tenant job state: checkpoints and ledgers of a job go to
                            DIR/<tenant>/jobs/<job id>/ and nowhere else; checkpoint.dir is refused
                            (default: TENSORGUARD_STATE_DIR/tenants, else .tensorguard/tenants)
  --max-jobs-per-tenant N   jobs QUEUED or RUNNING at once per tenant; more is RESOURCE_EXHAUSTED
                            (default 8)
  --max-workers-per-tenant N
                            workers.count summed over a tenant's QUEUED and RUNNING jobs; more is
                            RESOURCE_EXHAUSTED (default 64)
  --max-artifact-bytes N    largest job artifact GetJobArtifact sends (a checkpoint, an adapter: all its
                            files together); larger is RESOURCE_EXHAUSTED (default 2147483648, 2 GiB)
  --allow-non-private       accept jobs without noise (privacy.noiseMultiplier 0: ε is infinite);
                            refused by default. Their ε shows as Infinity and their signed privacy
                            reports say non_private: true
  --log-level LEVEL         trace, debug, info, warn, error, fatal or silent (default:
                            TENSORGUARD_LOG_LEVEL, else info)

Environment: TENSORGUARD_LOG_LEVEL (default of --log-level); RAY_ADDRESS (default of --address) and
RAY_AUTH_TOKEN (sent to that cluster); OTEL_EXPORTER_OTLP_ENDPOINT switches on OpenTelemetry export
(OTLP/gRPC; the SDK reads the other OTEL_* variables).`;

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];
const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/;

interface Opts {
  listen?: string;
  apiKeys?: string;
  address?: string;
  db: string;
  signingKey?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
  healthListen?: string;
  maxMessageBytes: number;
  rateLimit: number;
  rateBurst: number;
  backend: 'ray' | 'local-process' | 'simulated';
  localRoundMs: number;
  logLevel: string;
  hashKey: boolean;
  scrypt: boolean;
  generateKey: boolean;
  allowNonPrivate: boolean;
  dataRoot: string;
  stateRoot: string;
  maxJobsPerTenant: number;
  maxWorkersPerTenant: number;
  maxArtifactBytes: number;
}

function positiveInt(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${flag} must be a positive integer, got "${v}"`);
  return n;
}

export function parseServeArgs(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Opts {
  const envLevel = env.TENSORGUARD_LOG_LEVEL;
  if (envLevel !== undefined && envLevel !== '' && !LOG_LEVELS.includes(envLevel)) {
    throw new UsageError(`TENSORGUARD_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got "${envLevel}"`);
  }
  const stateBase = env.TENSORGUARD_STATE_DIR
    ? path.resolve(cwd, env.TENSORGUARD_STATE_DIR)
    : path.join(cwd, '.tensorguard');
  const o: Opts = {
    dataRoot: path.join(stateBase, 'data'),
    stateRoot: path.join(stateBase, 'tenants'),
    maxJobsPerTenant: 8,
    maxWorkersPerTenant: 64,
    maxArtifactBytes: DEFAULT_MAX_ARTIFACT_BYTES,
    db: path.join(cwd, '.tensorguard', 'api', 'jobs.db'),
    maxMessageBytes: 4 * 1024 * 1024,
    rateLimit: 20,
    rateBurst: 40,
    backend: 'ray',
    localRoundMs: 200,
    logLevel: envLevel || 'info',
    hashKey: false,
    scrypt: false,
    generateKey: false,
    allowNonPrivate: false,
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const value = (): string => {
      const v = args[++i];
      if (v === undefined || v.startsWith('--')) throw new UsageError(`${a} needs a value`);
      return v;
    };
    switch (a) {
      case '--listen':
        o.listen = value();
        if (!HOST_PORT.test(o.listen)) throw new UsageError(`--listen must be HOST:PORT, got "${o.listen}"`);
        break;
      case '--health-listen':
        o.healthListen = value();
        if (!HOST_PORT.test(o.healthListen)) {
          throw new UsageError(`--health-listen must be HOST:PORT, got "${o.healthListen}"`);
        }
        break;
      case '--api-keys':
        o.apiKeys = path.resolve(cwd, value());
        break;
      case '--address':
        o.address = value();
        break;
      case '--db':
        o.db = path.resolve(cwd, value());
        break;
      case '--signing-key':
        o.signingKey = path.resolve(cwd, value());
        break;
      case '--tls-cert':
        o.tlsCert = path.resolve(cwd, value());
        break;
      case '--tls-key':
        o.tlsKey = path.resolve(cwd, value());
        break;
      case '--tls-client-ca':
        o.tlsClientCa = path.resolve(cwd, value());
        break;
      case '--max-message-bytes':
        o.maxMessageBytes = positiveInt(a, value());
        break;
      case '--rate-limit':
        o.rateLimit = positiveInt(a, value());
        break;
      case '--rate-burst':
        o.rateBurst = positiveInt(a, value());
        break;
      case '--backend': {
        const b = value();
        if (b !== 'ray' && b !== 'local-process' && b !== 'simulated') {
          throw new UsageError(`--backend must be ray, local-process or simulated, got "${b}"`);
        }
        o.backend = b;
        break;
      }
      case '--local-round-ms':
        o.localRoundMs = positiveInt(a, value());
        break;
      case '--log-level':
        o.logLevel = value();
        if (!LOG_LEVELS.includes(o.logLevel)) {
          throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got "${o.logLevel}"`);
        }
        break;
      case '--hash-key':
        o.hashKey = true;
        break;
      case '--scrypt':
        o.scrypt = true;
        break;
      case '--generate-key':
        o.generateKey = true;
        break;
      case '--max-jobs-per-tenant':
        o.maxJobsPerTenant = positiveInt(a, value());
        break;
      case '--max-workers-per-tenant':
        o.maxWorkersPerTenant = positiveInt(a, value());
        break;
      case '--max-artifact-bytes':
        o.maxArtifactBytes = positiveInt(a, value());
        break;
      case '--data-root':
        o.dataRoot = path.resolve(cwd, value());
        break;
      case '--state-root':
        o.stateRoot = path.resolve(cwd, value());
        break;
      case '--allow-non-private':
        o.allowNonPrivate = true;
        break;
      default:
        throw new UsageError(`unknown option ${a}`);
    }
  }
  if (o.hashKey || o.generateKey) return o;
  if (!o.listen) throw new UsageError('--listen HOST:PORT is required');
  if (!o.apiKeys) throw new UsageError('--api-keys FILE is required');
  if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) {
    throw new UsageError('--tls-cert and --tls-key go together');
  }
  if (o.tlsClientCa && !o.tlsCert) throw new UsageError('--tls-client-ca needs --tls-cert and --tls-key');
  if (o.backend !== 'ray' && o.address) throw new UsageError('--address applies to --backend ray only');
  if (o.address !== undefined && !/^https?:\/\/[^/]/.test(o.address)) {
    throw new UsageError(
      `--address must be the Ray dashboard URL http://HOST:PORT (default port 8265), got "${o.address}"`,
    );
  }
  return o;
}

async function readStdin(signal: AbortSignal): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) {
    signal.throwIfAborted();
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8').trim();
}

function readPem(file: string, what: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new UsageError(
      `cannot read ${what} ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
    );
  }
}

async function makeBackend(o: Opts, io: Io): Promise<JobBackend> {
  if (o.backend === 'local-process') {
    return new LocalProcessBackend({
      workDir: path.join(path.dirname(o.db), 'local-jobs'),
      roundMs: o.localRoundMs,
    });
  }
  if (o.backend === 'simulated') return new SimulatedBackend(o.localRoundMs);
  try {
    return await createRayJobBackend({ address: o.address ?? null, env: io.env, signal: io.signal });
  } catch (err) {
    // A RAY_ADDRESS that is not a dashboard URL is a usage error like a bad --address.
    if (err instanceof RayError && !o.address && io.env.RAY_ADDRESS) {
      throw new UsageError(`RAY_ADDRESS: ${err.message}`);
    }
    throw err;
  }
}

export const command: Command = {
  name: 'serve',
  summary: 'serve the gRPC TrainingService API (submit, watch, cancel jobs; privacy reports, artifacts)',
  usage,
  async run(args, io) {
    const o = parseServeArgs(args, io.cwd, io.env);
    if (o.generateKey) {
      const key = generateKey();
      io.stdout(`key:  ${key}\nhash: ${o.scrypt ? await hashKeyScrypt(key) : hashKeySha256(key)}\n`);
      return 0;
    }
    if (o.hashKey) {
      const key = await readStdin(io.signal);
      if (key === '') throw new UsageError('--hash-key reads the key on stdin; got nothing');
      const problem = keyProblem(key);
      if (problem !== null) throw new UsageError(`--hash-key: the key ${problem}`);
      io.stdout(`${o.scrypt ? await hashKeyScrypt(key) : hashKeySha256(key)}\n`);
      return 0;
    }
    // Logs go to stderr: stdout carries only the machine-readable listening line (docs/api.md).
    const log = pino({ level: o.logLevel, base: { service: 'tensorguard-api' } }, destination(2));
    const telemetry = await startTelemetry(io.env, 'tensorguard-api');
    const apiKeys = new ApiKeyStore(o.apiKeys!);
    const { key: signingKey, created } = loadOrCreateSigningKey(
      o.signingKey ?? path.join(path.dirname(o.db), 'signing-key.pem'),
    );
    const store = new JobStore(o.db);
    const backend = await makeBackend(o, io);
    const tls = o.tlsCert
      ? {
          certChain: readPem(o.tlsCert, 'TLS certificate'),
          privateKey: readPem(o.tlsKey!, 'TLS key'),
          ...(o.tlsClientCa ? { clientCa: readPem(o.tlsClientCa, 'client CA bundle') } : {}),
        }
      : undefined;
    const accountantPool = new AccountantPool();
    const server = await startApiServer({
      listen: o.listen!,
      apiKeys,
      store,
      backend,
      validateSpec: driverSpecValidator,
      // σ calibration takes seconds with PLD: it runs in the pool's threads, not on the event loop.
      resolveSpec: accountantPool.resolveSpec,
      accountantPool,
      signingKey,
      logger: log,
      ...(tls ? { tls } : {}),
      ...(o.healthListen ? { healthListen: o.healthListen } : {}),
      maxMessageBytes: o.maxMessageBytes,
      rateLimit: { perSecond: o.rateLimit, burst: o.rateBurst },
      allowNonPrivate: o.allowNonPrivate,
      roots: { dataRoot: o.dataRoot, stateRoot: o.stateRoot },
      limits: { maxJobsPerTenant: o.maxJobsPerTenant, maxWorkersPerTenant: o.maxWorkersPerTenant },
      maxArtifactBytes: o.maxArtifactBytes,
    });
    const host = o.listen!.slice(0, o.listen!.lastIndexOf(':'));
    if (!tls && !/^(127\.|localhost$|\[::1\]$)/.test(host)) {
      log.warn(
        { listen: o.listen },
        'listening WITHOUT TLS on a non-loopback address: API keys travel in clear',
      );
    }
    const onHup = () => {
      try {
        apiKeys.reload();
        log.info({ keys: apiKeys.size }, 'API keys reloaded');
      } catch (err) {
        log.error({ err: (err as Error).message }, 'API key file rejected; keeping the previous keys');
      }
    };
    process.on('SIGHUP', onHup);
    log.info(
      {
        port: server.port,
        healthPort: server.healthPort,
        backend: backend.name,
        ...(backend instanceof RayJobBackend
          ? { rayDashboard: backend.address, rayHeadPgid: backend.head?.info.pgid ?? null }
          : {}),
        db: o.db,
        tls: tls ? (tls.clientCa ? 'mutual' : 'server') : 'off',
        signingKeyId: signingKey.keyId,
        signingKeyCreated: created,
        telemetry: telemetry.enabled,
      },
      'TrainingService listening',
    );
    // One machine-readable line on stdout for scripts and tests that start the server.
    io.stdout(
      JSON.stringify({
        type: 'listening',
        port: server.port,
        ...(server.healthPort !== null ? { health_port: server.healthPort } : {}),
        signing_key_id: signingKey.keyId,
      }) + '\n',
    );
    await new Promise<void>((resolve) => {
      if (io.signal.aborted) resolve();
      else io.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    log.info('shutting down');
    process.removeListener('SIGHUP', onHup);
    await server.close();
    await accountantPool.close();
    await backend.close();
    store.close();
    await telemetry.shutdown();
    return 0;
  },
};
