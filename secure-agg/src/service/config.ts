// The aggregator process's configuration file (JSON), validated once into server options.
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError, type RingBits, type StageDeadlinesMs } from '../index.js';
import type { AggregatorServerOptions } from './server.js';

/** The JSON file, as written by a user or the Ray job entrypoint. Paths are relative to the file. */
export interface AggregatorConfig {
  /** host:port to bind. Default "127.0.0.1:0". */
  address?: string;
  /** Vector length d. */
  vectorLength: number;
  /** Ring width, 32 or 64 (from planEncoding). */
  bits: RingBits;
  /** "complete" or "secagg+". Default "complete". */
  mode?: 'complete' | 'secagg+';
  /** SecAgg+ targets: dropoutRate, corruptFraction, securityBits, correctnessBits. */
  secAggPlus?: {
    dropoutRate?: number;
    corruptFraction?: number;
    securityBits?: number;
    correctnessBits?: number;
  };
  /** Stage deadlines, ms. */
  deadlinesMs?: Partial<StageDeadlinesMs>;
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

function req(cond: boolean, field: string, msg: string): asserts cond {
  if (!cond) throw new ConfigError(field, msg);
}

/** Reads and validates a config file; throws ConfigError naming the file and field. */
export function loadAggregatorConfig(file: string): {
  config: AggregatorConfig;
  server: Omit<AggregatorServerOptions, 'onSum' | 'onAbort' | 'logger'>;
} {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError(file, `cannot read the aggregator config: ${(err as Error).message}`);
  }
  req(typeof raw === 'object' && raw !== null && !Array.isArray(raw), file, 'must hold a JSON object');
  const c = raw as Record<string, unknown>;
  for (const k of Object.keys(c))
    req(KNOWN.has(k), k, `unknown option in ${file}; known: ${[...KNOWN].join(', ')}`);
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
  const dir = path.dirname(path.resolve(file));
  const readPem = (field: string, p: unknown) => {
    req(typeof p === 'string', field, 'must be a path to a PEM file');
    try {
      return fs.readFileSync(path.resolve(dir, p));
    } catch (err) {
      throw new ConfigError(field, `cannot read ${p}: ${(err as Error).message}`);
    }
  };
  const tls = config.tls
    ? {
        certChain: readPem('tls.cert', config.tls.cert),
        privateKey: readPem('tls.key', config.tls.key),
        ...(config.tls.clientCa !== undefined
          ? { clientCa: readPem('tls.clientCa', config.tls.clientCa) }
          : {}),
      }
    : undefined;
  return {
    config,
    server: {
      address: config.address ?? '127.0.0.1:0',
      vectorLength: config.vectorLength,
      bits: config.bits,
      mode: config.mode ?? 'complete',
      ...(config.secAggPlus ? { secAggPlus: config.secAggPlus } : {}),
      ...(config.deadlinesMs ? { deadlinesMs: config.deadlinesMs } : {}),
      ...(config.maxMessageBytes !== undefined ? { maxMessageBytes: config.maxMessageBytes } : {}),
      ...(tls ? { tls } : {}),
    },
  };
}
