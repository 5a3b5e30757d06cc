// API keys: a YAML file of hashed keys, each bound to one tenant (format in docs/api.md).
// Keys are never stored or logged in clear; the server compares hashes in constant time.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { z } from 'zod';
import { RateLimiter, type BucketOptions } from './rate-limit.js';

const scrypt = promisify(crypto.scrypt) as (
  password: crypto.BinaryLike,
  salt: crypto.BinaryLike,
  keylen: number,
  options: crypto.ScryptOptions,
) => Promise<Buffer>;

export type Scope = 'jobs.read' | 'jobs.write';
export const ALL_SCOPES: readonly Scope[] = ['jobs.read', 'jobs.write'];

/** A key entry as the server uses it (never the key itself). */
export interface ApiKeyEntry {
  /** A name for logs and rate-limit buckets. */
  id: string;
  tenant: string;
  revoked: boolean;
  scopes: Scope[];
  /** Requests per second and bucket size of this key's rate limit; null = the server default. */
  rateLimit: { perSecond: number; burst: number } | null;
  hash: ParsedHash;
}

type ParsedHash =
  | { kind: 'sha256'; digest: Buffer }
  | { kind: 'scrypt'; N: number; r: number; p: number; salt: Buffer; digest: Buffer };

const HASH_RE =
  /^(?:sha256:([0-9a-f]{64})|scrypt:N=(\d+),r=(\d+),p=(\d+):([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+))$/;

const keyFileSchema = z.strictObject({
  keys: z
    .array(
      z.strictObject({
        id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 characters from [A-Za-z0-9._-]'),
        tenant: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 characters from [A-Za-z0-9._-]'),
        hash: z
          .string()
          .regex(HASH_RE, 'must be "sha256:<64 hex>" or "scrypt:N=<n>,r=<r>,p=<p>:<salt b64>:<hash b64>"'),
        revoked: z.boolean().default(false),
        scopes: z.array(z.enum(['jobs.read', 'jobs.write'])).default(['jobs.read', 'jobs.write']),
        rate_limit: z
          .strictObject({ per_second: z.number().positive(), burst: z.number().int().positive() })
          .optional(),
      }),
    )
    .min(1, 'must list at least one key'),
});

export class ApiKeyFileError extends Error {
  override name = 'ApiKeyFileError';
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`API key file ${file}: ${message}`);
  }
}

function parseHash(s: string): ParsedHash {
  const m = HASH_RE.exec(s)!;
  if (m[1]) return { kind: 'sha256', digest: Buffer.from(m[1], 'hex') };
  return {
    kind: 'scrypt',
    N: Number(m[2]),
    r: Number(m[3]),
    p: Number(m[4]),
    salt: Buffer.from(m[5]!, 'base64'),
    digest: Buffer.from(m[6]!, 'base64'),
  };
}

/** Reads and validates a key file; throws ApiKeyFileError naming every bad field. */
export function loadApiKeyFile(file: string): ApiKeyEntry[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ApiKeyFileError(file, `cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  let raw: unknown;
  try {
    raw = YAML.parse(text);
  } catch (err) {
    throw new ApiKeyFileError(file, `not valid YAML (${(err as Error).message})`);
  }
  const parsed = keyFileSchema.safeParse(raw);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new ApiKeyFileError(file, `invalid:\n${lines.join('\n')}`);
  }
  const ids = new Set<string>();
  return parsed.data.keys.map((k, i) => {
    if (ids.has(k.id)) throw new ApiKeyFileError(file, `keys.${i}.id: duplicate id "${k.id}"`);
    ids.add(k.id);
    return {
      id: k.id,
      tenant: k.tenant,
      revoked: k.revoked,
      scopes: k.scopes,
      rateLimit: k.rate_limit ? { perSecond: k.rate_limit.per_second, burst: k.rate_limit.burst } : null,
      hash: parseHash(k.hash),
    };
  });
}

/**
 * Why `key` cannot be an API key, or null when it can: a key travels as gRPC metadata
 * (`authorization: Bearer <key>`), whose values are printable ASCII, and HTTP trims the ends.
 * `serve --hash-key` and authentication apply this same check, so that every key the first
 * hashes can be sent and recognised (passphrases with spaces included).
 */
export function keyProblem(key: string): string | null {
  if (key.length === 0) return 'is empty';
  if (key.length > MAX_KEY_LENGTH) return `is longer than ${MAX_KEY_LENGTH} characters`;
  if (!KEY_RE.test(key)) {
    return 'must be printable ASCII (letters, digits, spaces and punctuation; gRPC metadata carries nothing else)';
  }
  if (key.trim() !== key) return 'must not begin or end with a space (HTTP trims them)';
  return null;
}

export const MAX_KEY_LENGTH = 512;
const KEY_RE = /^[\x20-\x7e]+$/;

/** `sha256:<hex>` of a key: right for generated high-entropy keys (the default). */
export function hashKeySha256(key: string): string {
  return `sha256:${crypto.createHash('sha256').update(key, 'utf8').digest('hex')}`;
}

/** `scrypt:...` of a key, for keys people chose (low entropy). N=2^15, r=8, p=1, 16-byte salt. */
export async function hashKeyScrypt(key: string): Promise<string> {
  const salt = crypto.randomBytes(16);
  const [N, r, p] = [32768, 8, 1];
  const digest = await scrypt(key, salt, 32, { N, r, p, maxmem: 128 * N * r * 2 });
  return `scrypt:N=${N},r=${r},p=${p}:${salt.toString('base64')}:${digest.toString('base64')}`;
}

/** A new random key: "tg_" + 43 base64url characters (256 bits). */
export function generateKey(): string {
  return `tg_${crypto.randomBytes(32).toString('base64url')}`;
}

export type AuthResult =
  | { ok: true; entry: ApiKeyEntry }
  | { ok: false; reason: 'missing' | 'malformed' | 'unknown' | 'revoked' }
  /** Too many keys from this peer needed scrypt: retry after `retryMs` (no hash was computed). */
  | { ok: false; reason: 'throttled'; retryMs: number };

export interface ApiKeyStoreOptions {
  /**
   * scrypt verifications (keys not found by their SHA-256) allowed per peer address: each costs
   * ~100 ms of CPU and 32 MiB, so a stream of made-up keys must not buy one per request.
   * Default 1 per second, burst 5.
   */
  scryptPerPeer?: BucketOptions;
  /** Called before each scrypt computation (tests count them; nothing else should need it). */
  onScrypt?: () => void;
}

/** How many digests of keys that matched nothing are remembered (no scrypt on a repeat). */
const UNKNOWN_CACHE_SIZE = 10_000;

/**
 * Checks bearer keys against the key file, cheapest first. sha256 entries are found by digest.
 * A key's SHA-256 digest then finds it in two in-memory caches: keys that matched a scrypt
 * entry, and keys that matched nothing (bounded). Only a key in neither costs scrypt, and only
 * while its peer address has tokens (`scryptPerPeer`), so unknown keys cannot make the server
 * hash per request. `reload()` re-reads the file (the server calls it on SIGHUP) and empties
 * the caches; revocations apply to the next call.
 */
export class ApiKeyStore {
  private entries: ApiKeyEntry[] = [];
  private scryptCache = new Map<string, string>();
  private unknownCache = new Map<string, true>();
  private readonly peerLimiter: RateLimiter;

  constructor(
    readonly file: string,
    private readonly opts: ApiKeyStoreOptions = {},
  ) {
    this.peerLimiter = new RateLimiter(opts.scryptPerPeer ?? { perSecond: 1, burst: 5 });
    this.reload();
  }

  /** Throws ApiKeyFileError and keeps the previous keys when the file is bad. */
  reload(): void {
    this.entries = loadApiKeyFile(this.file);
    this.scryptCache.clear();
    this.unknownCache.clear();
  }

  get size(): number {
    return this.entries.length;
  }

  /**
   * `authorization` metadata value -> the key's entry, or why it was refused. `peer` (the
   * caller's address, without port) buckets the scrypt verifications.
   */
  async authenticate(authorization: string | undefined, peer = ''): Promise<AuthResult> {
    if (authorization === undefined || authorization === '') return { ok: false, reason: 'missing' };
    const m = /^Bearer (.*)$/is.exec(authorization);
    if (!m || keyProblem(m[1]!) !== null) return { ok: false, reason: 'malformed' };
    const key = m[1]!;
    const digest = crypto.createHash('sha256').update(key, 'utf8').digest();
    let found: ApiKeyEntry | undefined;
    for (const e of this.entries) {
      if (e.hash.kind === 'sha256' && crypto.timingSafeEqual(e.hash.digest, digest)) found = e;
    }
    if (!found) {
      const cachedId = this.scryptCache.get(digest.toString('hex'));
      found = cachedId === undefined ? undefined : this.entries.find((e) => e.id === cachedId);
    }
    const hex = digest.toString('hex');
    if (!found && this.unknownCache.has(hex)) return { ok: false, reason: 'unknown' };
    const scryptEntries = found ? [] : this.entries.filter((e) => e.hash.kind === 'scrypt');
    if (scryptEntries.length > 0) {
      const waitMs = this.peerLimiter.take(peer);
      if (waitMs > 0) return { ok: false, reason: 'throttled', retryMs: waitMs };
      const entries = this.entries;
      for (const e of scryptEntries) {
        if (e.hash.kind !== 'scrypt') continue;
        const { N, r, p, salt } = e.hash;
        this.opts.onScrypt?.();
        const d = await scrypt(key, salt, e.hash.digest.length, { N, r, p, maxmem: 128 * N * r * 2 });
        if (crypto.timingSafeEqual(d, e.hash.digest)) {
          // Only when the file was not reloaded meanwhile (reload empties the caches).
          if (this.entries === entries) this.scryptCache.set(hex, e.id);
          found = e;
          break;
        }
      }
      if (!found && this.entries === entries) this.rememberUnknown(hex);
    }
    if (!found) return { ok: false, reason: 'unknown' };
    if (found.revoked) return { ok: false, reason: 'revoked' };
    return { ok: true, entry: found };
  }

  private rememberUnknown(hex: string): void {
    if (this.unknownCache.size >= UNKNOWN_CACHE_SIZE) {
      // Oldest first (Map keeps insertion order).
      this.unknownCache.delete(this.unknownCache.keys().next().value!);
    }
    this.unknownCache.set(hex, true);
  }
}
