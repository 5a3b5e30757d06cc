// Signed privacy reports. The signed bytes are canonical JSON (sorted keys, snake_case names as
// in the .proto) of the report's figures, so a verifier in any language checks the Ed25519
// signature over the bytes it received and then parses them; nothing depends on re-encoding.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { PrivacyReport, PrivacyReportBody } from './domain.js';

export const REPORT_VERSION = 2;

export interface SigningKey {
  privateKey: crypto.KeyObject;
  publicKeyPem: string;
  /** First 16 hex characters of sha256(DER SPKI). */
  keyId: string;
}

export function keyIdOf(publicKey: crypto.KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  return crypto.createHash('sha256').update(der).digest('hex').slice(0, 16);
}

/**
 * Reads the server's Ed25519 private key (PKCS#8 PEM) from `file`, or creates one there
 * (mode 0600) when the file does not exist. Throws when the file holds another kind of key.
 */
export function loadOrCreateSigningKey(file: string): { key: SigningKey; created: boolean } {
  let created = false;
  let privateKey: crypto.KeyObject;
  if (fs.existsSync(file)) {
    privateKey = crypto.createPrivateKey(fs.readFileSync(file));
    if (privateKey.asymmetricKeyType !== 'ed25519') {
      throw new Error(
        `signing key ${file} is a ${privateKey.asymmetricKeyType} key; an Ed25519 key is required`,
      );
    }
  } else {
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    const pair = crypto.generateKeyPairSync('ed25519');
    privateKey = pair.privateKey;
    fs.writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
    created = true;
  }
  const publicKey = crypto.createPublicKey(privateKey);
  return {
    key: {
      privateKey,
      publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      keyId: keyIdOf(publicKey),
    },
    created,
  };
}

/** JSON with object keys sorted at every level (no whitespace); arrays keep their order. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`;
  }
  // JSON has no Infinity and JSON.stringify would write null (read back as 0: ε understated).
  // As in the proto3 JSON mapping, a non-finite number is written as the string of its name.
  if (typeof v === 'number' && !Number.isFinite(v)) return JSON.stringify(String(v));
  return JSON.stringify(v);
}

/** Stated in every signed report whose ε is infinite (non_private: true). */
export const NON_PRIVATE_WARNING =
  'NOT DIFFERENTIALLY PRIVATE: this job ran without noise (noise multiplier 0); epsilon is Infinity ' +
  'and no privacy guarantee holds for its outputs';

/** A report whose guarantee is void: ε infinite (or not a number), or no noise at all. */
export function isNonPrivateReport(b: PrivacyReportBody): boolean {
  return (
    !Number.isFinite(b.epsilon) ||
    b.parameters.noiseMultiplier === 0 ||
    b.shards.some((s) => !Number.isFinite(s.epsilon))
  );
}

/**
 * The signed document: fields 1-10 of tensorguard.v1.PrivacyReport with their .proto names,
 * plus `non_private` (always present, so a verifier can rely on it) and, when it is true, a
 * `warning`. An infinite ε is the string "Infinity" (canonicalJson).
 */
export function reportPayload(b: PrivacyReportBody): Record<string, unknown> {
  const p = b.parameters;
  const nonPrivate = isNonPrivateReport(b);
  return {
    report_version: REPORT_VERSION,
    non_private: nonPrivate,
    ...(nonPrivate ? { warning: NON_PRIVATE_WARNING } : {}),
    job_id: b.jobId,
    tenant: b.tenant,
    state: `JOB_STATE_${b.state}`,
    generate_time: new Date(b.generateTimeMs).toISOString(),
    epsilon: b.epsilon,
    delta: b.delta,
    epsilon_budget: b.epsilonBudget,
    rounds_completed: b.roundsCompleted,
    parameters: {
      accountant: p.accountant,
      mechanism: p.mechanism,
      noise_multiplier: p.noiseMultiplier,
      clip_norm: p.clipNorm,
      sampling_rate: p.samplingRate,
      steps: p.steps,
      delta: p.delta,
      orders: p.orders,
      min_contributors: p.minContributors,
      num_workers: p.numWorkers,
    },
    shards: b.shards.map((s) => ({
      shard_id: s.shardId,
      epsilon: s.epsilon,
      delta: s.delta,
      examples: s.examples,
      sampling_rate: s.samplingRate,
      steps: s.steps,
    })),
  };
}

export function signReport(body: PrivacyReportBody, key: SigningKey): PrivacyReport {
  const signedPayload = Buffer.from(canonicalJson(reportPayload(body)), 'utf8');
  const signature = crypto.sign(null, signedPayload, key.privateKey);
  return {
    ...body,
    nonPrivate: isNonPrivateReport(body),
    signedPayload,
    signatureAlgorithm: 'ed25519',
    signature,
    keyId: key.keyId,
    publicKeyPem: key.publicKeyPem,
  };
}

/**
 * Verifies a report: the public key's id must equal `pinnedKeyId` (when given, which a client
 * should always do), and the signature must hold over signed_payload. Returns the signed
 * document, or throws saying what failed.
 */
export function verifyReport(
  r: Pick<PrivacyReport, 'signedPayload' | 'signature' | 'publicKeyPem' | 'keyId'>,
  pinnedKeyId?: string,
): Record<string, unknown> {
  const pub = crypto.createPublicKey(r.publicKeyPem);
  const id = keyIdOf(pub);
  if (id !== r.keyId) throw new Error(`report key_id ${r.keyId} does not match its public key (${id})`);
  if (pinnedKeyId !== undefined && id !== pinnedKeyId) {
    throw new Error(`report signed by key ${id}, expected the pinned key ${pinnedKeyId}`);
  }
  if (!crypto.verify(null, r.signedPayload, pub, r.signature))
    throw new Error('privacy report signature is invalid');
  return JSON.parse(Buffer.from(r.signedPayload).toString('utf8')) as Record<string, unknown>;
}
