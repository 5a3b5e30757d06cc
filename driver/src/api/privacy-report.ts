// Signed privacy reports. The signed bytes are canonical JSON (sorted keys, snake_case names as
// in the .proto) of the report's figures, so a verifier in any language checks the Ed25519
// signature over the bytes it received and then parses them; nothing depends on re-encoding.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { PrivacyReport, PrivacyReportBody } from './domain.js';

export const REPORT_VERSION = 1;

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
  if (typeof v === 'number' && !Number.isFinite(v)) throw new Error(`cannot sign a non-finite number (${v})`);
  return JSON.stringify(v);
}

/** The signed document: fields 1-10 of tensorguard.v1.PrivacyReport with their .proto names. */
export function reportPayload(b: PrivacyReportBody): Record<string, unknown> {
  const p = b.parameters;
  return {
    report_version: REPORT_VERSION,
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
