// The configuration files (JSON) of the aggregator and key-holder processes, each validated once
// into server options. Unknown or inconsistent options are refused with a ConfigError naming the
// field; paths are relative to the file.
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError, type RingBits, type StageDeadlinesMs } from '../index.js';
import type { ClientTlsOptions, ServerTlsOptions } from './grpc-edge.js';
import type { KeyHolderClientOptions } from './key-holder-client.js';
import type { KeyHolderServerOptions } from './key-holder-server.js';
import type { AggregatorServerOptions } from './server.js';

/** The JSON file, as written by a user or the Ray job entrypoint. Paths are relative to the file. */
export interface AggregatorConfig {
  /** host:port to bind. Default "127.0.0.1:0". */
  address?: string;
  /** Vector length d. */
  vectorLength: number;
  /** Ring width, 32 or 64 (from planEncoding). */
  bits: RingBits;
  /** "masking" (pairwise masks, four stages) or "he" (BFV under a key holder's key). Default "masking". */
  scheme?: 'masking' | 'he';
  /**
   * Scheme "he": host:port of a running key holder (bin/key-holder.js). When absent the aggregator
   * starts one as its child on loopback (minInputs 2), with the identity in keyHolderTlsDir, and
   * stops it when it exits.
   */
  keyHolder?: string;
  /**
   * Scheme "he", required: mutual TLS to the key holder (PEM files): the job's CA as rootCa and
   * the aggregator's job certificate and key (the key holder answers only the aggregator).
   */
  keyHolderTls?: { rootCa: string; cert: string; key: string; serverName?: string };
  /**
   * Scheme "he" without keyHolder: the key holder's own job identity (a directory with ca.pem,
   * cert.pem, key.pem naming tensorguard-key-holder) for the child it starts.
   */
  keyHolderTlsDir?: string;
  /** Masking: "complete" or "secagg+". Default "complete". */
  mode?: 'complete' | 'secagg+';
  /** SecAgg+ targets: dropoutRate, corruptFraction, securityBits, correctnessBits. */
  secAggPlus?: {
    dropoutRate?: number;
    corruptFraction?: number;
    securityBits?: number;
    correctnessBits?: number;
  };
  /** Stage deadlines, ms; ENCRYPTED_INPUT (scheme "he" only) defaults to MASKED_INPUT's. */
  deadlinesMs?: Partial<StageDeadlinesMs & { ENCRYPTED_INPUT: number }>;
  /** Largest message, bytes. */
  maxMessageBytes?: number;
  /** PEM files: server certificate chain and key; clientCa turns on mutual TLS. */
  tls?: { cert: string; key: string; clientCa?: string };
  /** The built-in coordinator opens a round whenever this many workers are joined. Default 2. */
  minMembers?: number;
  /** Stop after this many rounds (completed or aborted); 0 = run until SIGTERM. Default 0. */
  rounds?: number;
  /** Print each sum's integers in the round's stdout line (small vectors, tests). Default false. */
  printSums?: boolean;
  /** pino level for the stderr log. Default "info". */
  logLevel?: string;
}

const KNOWN = new Set([
  'address',
  'vectorLength',
  'bits',
  'scheme',
  'keyHolder',
  'keyHolderTls',
  'keyHolderTlsDir',
  'mode',
  'secAggPlus',
  'deadlinesMs',
  'maxMessageBytes',
  'tls',
  'minMembers',
  'rounds',
  'printSums',
  'logLevel',
]);

const STAGE_KEYS = ['ADVERTISE_KEYS', 'SHARE_KEYS', 'MASKED_INPUT', 'UNMASK', 'ENCRYPTED_INPUT'];
const HOST_PORT = /^[^\s/:]+:\d{1,5}$|^\[[0-9a-fA-F:.]+\]:\d{1,5}$/;

function req(cond: boolean, field: string, msg: string): asserts cond {
  if (!cond) throw new ConfigError(field, msg);
}

function readObject(file: string, what: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError(file, `cannot read the ${what} config: ${(err as Error).message}`);
  }
  req(typeof raw === 'object' && raw !== null && !Array.isArray(raw), file, 'must hold a JSON object');
  return raw as Record<string, unknown>;
}

function pemReader(file: string) {
  const dir = path.dirname(path.resolve(file));
  return (field: string, p: unknown): Buffer => {
    req(typeof p === 'string', field, 'must be a path to a PEM file');
    try {
      return fs.readFileSync(path.resolve(dir, p));
    } catch (err) {
      throw new ConfigError(field, `cannot read ${p}: ${(err as Error).message}`);
    }
  };
}

function checkKeys(obj: unknown, field: string, known: string[]): Record<string, unknown> {
  req(typeof obj === 'object' && obj !== null && !Array.isArray(obj), field, 'must be an object');
  for (const k of Object.keys(obj))
    req(known.includes(k), `${field}.${k}`, `unknown option; known: ${known.join(', ')}`);
  return obj as Record<string, unknown>;
}

/** A server's `tls` option: PEM files cert and key, and clientCa for mutual TLS. */
function serverTls(file: string, tls: unknown): ServerTlsOptions | undefined {
  if (tls === undefined) return undefined;
  const t = checkKeys(tls, 'tls', ['cert', 'key', 'clientCa']);
  const readPem = pemReader(file);
  return {
    certChain: readPem('tls.cert', t.cert),
    privateKey: readPem('tls.key', t.key),
    ...(t.clientCa !== undefined ? { clientCa: readPem('tls.clientCa', t.clientCa) } : {}),
  };
}

/** Reads and validates a config file; throws ConfigError naming the file and field. */
export function loadAggregatorConfig(file: string): {
  config: AggregatorConfig;
  server: Omit<AggregatorServerOptions, 'onSum' | 'onAbort' | 'logger' | 'keyHolder'>;
  /** Scheme "he": the key holder to connect to; undefined means start one as a child. */
  keyHolder: KeyHolderClientOptions | undefined;
  /** Scheme "he": the aggregator's mutual TLS to the key holder (also to the child it starts). */
  keyHolderTls?: ClientTlsOptions;
} {
  const c = readObject(file, 'aggregator');
  for (const k of Object.keys(c))
    req(KNOWN.has(k), k, `unknown option in ${file}; known: ${[...KNOWN].join(', ')}`);
  req(
    c.scheme === undefined || c.scheme === 'masking' || c.scheme === 'he',
    'scheme',
    `must be "masking" or "he", got ${JSON.stringify(c.scheme)}`,
  );
  const he = c.scheme === 'he';
  if (he) {
    for (const k of ['mode', 'secAggPlus'])
      req(c[k] === undefined, k, 'applies to scheme "masking" only; remove it or set scheme "masking"');
    req(
      c.keyHolder === undefined || (typeof c.keyHolder === 'string' && HOST_PORT.test(c.keyHolder)),
      'keyHolder',
      `must be HOST:PORT of a running key holder, got ${JSON.stringify(c.keyHolder)}`,
    );
    req(
      c.keyHolderTls !== undefined,
      'keyHolderTls',
      'is required with scheme "he": the key holder serves mutual TLS only; give rootCa (the job\'s CA), cert and key (the aggregator\'s)',
    );
    req(
      (c.keyHolder === undefined) === (typeof c.keyHolderTlsDir === 'string'),
      'keyHolderTlsDir',
      "names the key holder's identity directory exactly when keyHolder is absent (the aggregator then starts the key holder as its child with it)",
    );
  } else {
    for (const k of ['keyHolder', 'keyHolderTls', 'keyHolderTlsDir'])
      req(c[k] === undefined, k, 'applies to scheme "he" only; remove it or set scheme "he"');
  }
  if (c.deadlinesMs !== undefined) {
    const d = checkKeys(c.deadlinesMs, 'deadlinesMs', STAGE_KEYS);
    req(
      he || d.ENCRYPTED_INPUT === undefined,
      'deadlinesMs.ENCRYPTED_INPUT',
      'applies to scheme "he" only; remove it or set scheme "he"',
    );
  }
  req(
    Number.isSafeInteger(c.vectorLength) && (c.vectorLength as number) >= 1,
    'vectorLength',
    `must be an integer ≥ 1, got ${JSON.stringify(c.vectorLength)}`,
  );
  req(c.bits === 32 || c.bits === 64, 'bits', `must be 32 or 64, got ${JSON.stringify(c.bits)}`);
  req(
    c.mode === undefined || c.mode === 'complete' || c.mode === 'secagg+',
    'mode',
    `must be "complete" or "secagg+", got ${JSON.stringify(c.mode)}`,
  );
  req(
    c.minMembers === undefined || (Number.isSafeInteger(c.minMembers) && (c.minMembers as number) >= 2),
    'minMembers',
    `must be an integer ≥ 2, got ${JSON.stringify(c.minMembers)}`,
  );
  req(
    c.rounds === undefined || (Number.isSafeInteger(c.rounds) && (c.rounds as number) >= 0),
    'rounds',
    `must be an integer ≥ 0, got ${JSON.stringify(c.rounds)}`,
  );
  const config = c as unknown as AggregatorConfig;
  const tls = serverTls(file, config.tls);
  let keyHolderTls: ClientTlsOptions | undefined;
  if (he) {
    const t = checkKeys(config.keyHolderTls, 'keyHolderTls', ['rootCa', 'cert', 'key', 'serverName']);
    req(
      t.cert !== undefined && t.key !== undefined,
      'keyHolderTls',
      "needs cert and key (the aggregator's job identity): the key holder serves mutual TLS only",
    );
    const readPem = pemReader(file);
    keyHolderTls = {
      rootCa: readPem('keyHolderTls.rootCa', t.rootCa),
      certChain: readPem('keyHolderTls.cert', t.cert),
      privateKey: readPem('keyHolderTls.key', t.key),
      ...(t.serverName !== undefined ? { serverNameOverride: String(t.serverName) } : {}),
    };
  }
  const keyHolder: KeyHolderClientOptions | undefined =
    he && config.keyHolder !== undefined ? { address: config.keyHolder, tls: keyHolderTls! } : undefined;
  const { ENCRYPTED_INPUT: encryptedInputMs, ...deadlinesMs } = config.deadlinesMs ?? {};
  return {
    config,
    server: {
      address: config.address ?? '127.0.0.1:0',
      vectorLength: config.vectorLength,
      bits: config.bits,
      scheme: config.scheme ?? 'masking',
      ...(he ? {} : { mode: config.mode ?? 'complete' }),
      ...(config.secAggPlus ? { secAggPlus: config.secAggPlus } : {}),
      ...(config.deadlinesMs ? { deadlinesMs } : {}),
      ...(encryptedInputMs !== undefined ? { encryptedInputMs } : {}),
      ...(config.maxMessageBytes !== undefined ? { maxMessageBytes: config.maxMessageBytes } : {}),
      ...(tls ? { tls } : {}),
    },
    keyHolder,
    ...(keyHolderTls ? { keyHolderTls } : {}),
  };
}

/** The key holder process's file (bin/key-holder.js --config). */
export interface KeyHolderConfig {
  /** host:port to bind. Default "127.0.0.1:0". */
  address?: string;
  /** Fewest distinct contributors a decrypted sum may hold, an integer ≥ 2. Default 2. */
  minInputs?: number;
  /** Largest request, bytes. Default 64 MiB. */
  maxMessageBytes?: number;
  /**
   * The key holder's job identity, PEM files: its certificate (naming tensorguard-key-holder) and
   * key, and the job's CA as clientCa (mutual TLS, only the aggregator answered; workers'
   * certificates checked against it). Required unless the bin's --tls-dir gives it.
   */
  tls?: { cert: string; key: string; clientCa: string };
  /** pino level for the stderr log. Default "info". */
  logLevel?: string;
}

const KEY_HOLDER_KNOWN = ['address', 'minInputs', 'maxMessageBytes', 'tls', 'logLevel'];

/** Reads and validates a key holder config file; throws ConfigError naming the file and field. */
export function loadKeyHolderConfig(file: string): {
  config: KeyHolderConfig;
  server: Omit<KeyHolderServerOptions, 'logger' | 'identity'> & {
    identity?: KeyHolderServerOptions['identity'];
  };
} {
  const c = readObject(file, 'key holder');
  for (const k of Object.keys(c))
    req(KEY_HOLDER_KNOWN.includes(k), k, `unknown option in ${file}; known: ${KEY_HOLDER_KNOWN.join(', ')}`);
  req(
    c.minInputs === undefined || (Number.isSafeInteger(c.minInputs) && (c.minInputs as number) >= 2),
    'minInputs',
    `must be an integer ≥ 2 (the key holder never decrypts one worker's ciphertext), got ${JSON.stringify(c.minInputs)}`,
  );
  req(
    c.address === undefined || (typeof c.address === 'string' && HOST_PORT.test(c.address)),
    'address',
    `must be HOST:PORT, got ${JSON.stringify(c.address)}`,
  );
  req(
    c.maxMessageBytes === undefined ||
      (Number.isSafeInteger(c.maxMessageBytes) && (c.maxMessageBytes as number) >= 1 << 20),
    'maxMessageBytes',
    `must be an integer ≥ 1048576, got ${JSON.stringify(c.maxMessageBytes)}`,
  );
  const config = c as KeyHolderConfig;
  const tls = serverTls(file, config.tls);
  req(
    tls === undefined || tls.clientCa !== undefined,
    'tls.clientCa',
    "is required: the job's CA, which the key holder checks the aggregator's and the workers' certificates against",
  );
  return {
    config,
    server: {
      address: config.address ?? '127.0.0.1:0',
      minInputs: config.minInputs ?? 2,
      ...(config.maxMessageBytes !== undefined ? { maxMessageBytes: config.maxMessageBytes } : {}),
      ...(tls ? { identity: { ca: tls.clientCa!, cert: tls.certChain, key: tls.privateKey } } : {}),
    },
  };
}
