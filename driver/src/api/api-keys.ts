// API keys: a YAML file of hashed keys, each bound to one tenant (format in docs/api.md).
// Keys are never stored or logged in clear; the server compares hashes in constant time.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { z } from 'zod';

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
  { ok: true; entry: ApiKeyEntry } | { ok: false; reason: 'missing' | 'malformed' | 'unknown' | 'revoked' };

/**
 * Checks bearer keys against the key file. sha256 entries are found by digest; scrypt entries
 * are tried in turn on a cache miss, and a successful match is cached by the key's sha256
 * digest (in memory only), so scrypt runs once per key and process. `reload()` re-reads the file
 * (the server calls it on SIGHUP and when the file changes); revocations apply to the next call.
 */
export class ApiKeyStore {
  private entries: ApiKeyEntry[] = [];
  private scryptCache = new Map<string, string>();

  constructor(readonly file: string) {
    this.reload();
  }

  /** Throws ApiKeyFileError and keeps the previous keys when the file is bad. */
  reload(): void {
    this.entries = loadApiKeyFile(this.file);
    this.scryptCache.clear();
  }

  get size(): number {
    return this.entries.length;
  }

  /** `authorization` metadata value(s) -> the key's entry, or why it was refused. */
  async authenticate(authorization: string | undefined): Promise<AuthResult> {
    if (authorization === undefined || authorization === '') return { ok: false, reason: 'missing' };
    const m = /^Bearer ([\x21-\x7e]{1,512})$/i.exec(authorization);
    if (!m) return { ok: false, reason: 'malformed' };
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
    if (!found) {
      for (const e of this.entries) {
        if (e.hash.kind !== 'scrypt') continue;
        const { N, r, p, salt } = e.hash;
        const d = await scrypt(key, salt, e.hash.digest.length, { N, r, p, maxmem: 128 * N * r * 2 });
        if (crypto.timingSafeEqual(d, e.hash.digest)) {
          this.scryptCache.set(digest.toString('hex'), e.id);
          found = e;
          break;
        }
      }
    }
    if (!found) return { ok: false, reason: 'unknown' };
    if (found.revoked) return { ok: false, reason: 'revoked' };
    return { ok: true, entry: found };
  }
}
