// Helpers for the API integration tests: a real `tensorguard serve` process on loopback, API key
// files, job specs, and clients generated from the same .proto (@tensorguard/proto).
import * as grpc from '@grpc/grpc-js';
import { type trainingService as pb, TrainingServiceClient } from '@tensorguard/proto';
import { type ChildProcess, type ChildProcessByStdio, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface Key {
  id: string;
  tenant: string;
  key: string;
  revoked?: boolean;
  scopes?: string[];
  rateLimit?: { perSecond: number; burst: number };
}

export function keyFile(dir: string, keys: Key[]): string {
  const lines = ['keys:'];
  for (const k of keys) {
    lines.push(`  - id: ${k.id}`, `    tenant: ${k.tenant}`);
    lines.push(`    hash: sha256:${crypto.createHash('sha256').update(k.key).digest('hex')}`);
    if (k.revoked) lines.push('    revoked: true');
    if (k.scopes) lines.push(`    scopes: [${k.scopes.join(', ')}]`);
    if (k.rateLimit)
      lines.push(`    rate_limit: { per_second: ${k.rateLimit.perSecond}, burst: ${k.rateLimit.burst} }`);
  }
  const file = path.join(dir, 'keys.yaml');
  fs.writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

export const tmpDir = (prefix: string) => fs.mkdtempSync(path.join(os.tmpdir(), `tg-api-${prefix}-`));

/** A small valid job document (the fields the job-spec schema requires). */
export function jobDocument(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: 'api-test',
    rounds: 5,
    model: { kind: 'mlp', hidden: [16] },
    dataset: { format: 'idx', preset: 'fashion-mnist', trainExamples: 2000, testExamples: 500 },
    workers: { count: 2 },
    privacy: {
      clipNorm: 1,
      noiseMultiplier: 1.1,
      delta: 1e-5,
      samplingRate: 0.02,
      epsilonBudget: 8,
      accountant: 'rdp',
    },
    secureAggregation: { mode: 'masking', threshold: 2 },
    optimizer: { kind: 'sgd', learningRate: 0.1 },
    evaluation: { everyRounds: 2 },
    ...over,
  };
}

export interface ServerProcess {
  port: number;
  /** The plaintext health listener's port (--health-listen), else null. */
  healthPort: number | null;
  address: string;
  signingKeyId: string;
  child: ChildProcess;
  logs: () => string;
  /** SIGTERM and wait; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL (a crash) and wait. */
  kill(): Promise<void>;
}

/** `tensorguard serve <args>` from the TypeScript sources, stdout and stderr piped. */
export function spawnServe(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): ChildProcessByStdio<null, Readable, Readable> {
  return spawn(
    process.execPath,
    [
      '--conditions=tensorguard-source',
      '--import',
      'tsx',
      path.join(root, 'driver/src/bin/tensorguard.ts'),
      'serve',
      ...args,
    ],
    { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
}

/**
 * Starts `tensorguard serve` (from source under tsx) and waits for its listening line (30 s by
 * default; a server that starts a private Ray head needs longer).
 */
export async function startServer(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  startTimeoutMs = 30_000,
): Promise<ServerProcess> {
  const child = spawnServe(args, env);
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const listening = await new Promise<{ port: number; health_port?: number; signing_key_id: string }>(
    (resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGTERM');
        reject(new Error(`server did not start in ${startTimeoutMs} ms:\n${err}`));
      }, startTimeoutMs);
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        for (const line of out.split('\n')) {
          if (line.startsWith('{"type":"listening"')) {
            clearTimeout(timer);
            resolve(JSON.parse(line) as { port: number; health_port?: number; signing_key_id: string });
          }
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`server exited with ${code}:\n${err}`));
      });
    },
  );
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    port: listening.port,
    healthPort: listening.health_port ?? null,
    address: `127.0.0.1:${listening.port}`,
    signingKeyId: listening.signing_key_id,
    child,
    logs: () => out + err,
    async stop() {
      child.kill('SIGTERM');
      return exited;
    },
    async kill() {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

export type Client = InstanceType<typeof TrainingServiceClient>;

export function client(
  address: string,
  creds = grpc.credentials.createInsecure(),
  options: grpc.ClientOptions = {},
): Client {
  return new TrainingServiceClient(address, creds, options);
}

export function bearer(key: string): grpc.Metadata {
  const m = new grpc.Metadata();
  m.set('authorization', `Bearer ${key}`);
  return m;
}

type Unary<Req, Res> = (
  req: Req,
  md: grpc.Metadata,
  opts: Partial<grpc.CallOptions>,
  cb: (err: grpc.ServiceError | null, res: Res) => void,
) => grpc.ClientUnaryCall;

/** Promisified unary call with a 10 s deadline. */
export function call<Req, Res>(
  c: Client,
  method: Unary<Req, Res>,
  req: Req,
  md: grpc.Metadata,
  deadlineMs = 10_000,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(c, req, md, { deadline: Date.now() + deadlineMs }, (err, res) =>
      err ? reject(err) : resolve(res),
    );
  });
}

/** Collects a WatchJob stream until it ends; `onEvent` may cancel it. */
export function watch(
  c: Client,
  req: pb.WatchJobRequest,
  md: grpc.Metadata,
  onEvent: (e: pb.JobEvent, stream: grpc.ClientReadableStream<pb.WatchJobResponse>) => void = () => {},
): Promise<{ events: pb.JobEvent[]; error: grpc.ServiceError | null }> {
  return new Promise((resolve) => {
    const events: pb.JobEvent[] = [];
    const stream = c.watchJob(req, md);
    stream.on('data', (r: pb.WatchJobResponse) => {
      events.push(r.event!);
      onEvent(r.event!, stream);
    });
    stream.on('error', (error: grpc.ServiceError) => resolve({ events, error }));
    stream.on('end', () => resolve({ events, error: null }));
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
