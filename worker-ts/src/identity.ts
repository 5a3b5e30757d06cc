// A worker's job identity for secure aggregation (secure-agg's RoundIdentity) from its `--tls-dir`:
// the same X.509 certificate and key it uses for mutual TLS, issued by the job's CA
// (ray-cluster's pki.py). Signatures are ECDSA P-256 with SHA-256 over secure-agg's transcripts.
import { createPrivateKey, sign, verify, X509Certificate, type KeyObject } from 'node:crypto';
import type { RoundIdentity } from '@tensorguard/secure-agg';
import type { TlsIdentity } from './tls.js';

/** The subject's common name, e.g. 'worker-3' (Node prints the subject one attribute per line). */
function commonName(cert: X509Certificate): string | undefined {
  return /^CN=(.*)$/m.exec(cert.subject)?.[1];
}

/**
 * `tls`'s certificate as this worker's credential and its key for signing. Another member's
 * credential is accepted when the job's CA issued it, it is valid now, and its common name is that
 * member's id. A credential's verdict (chain check, common name) and its public key are cached by
 * its bytes: every round's roster and attestations carry the same certificates, and
 * `X509Certificate.publicKey` builds a new KeyObject on each read. The validity window is checked
 * again at every verification, so a cached certificate that expires is refused from then on.
 */
export function x509Identity(tls: TlsIdentity): RoundIdentity {
  const ca = new X509Certificate(tls.ca);
  const key: KeyObject = createPrivateKey(tls.key);
  const checked = new Map<
    string,
    { cn: string | undefined; publicKey: KeyObject; notBefore: number; notAfter: number } | null
  >();
  const load = (credential: Uint8Array) => {
    const k = Buffer.from(credential).toString('latin1');
    let entry = checked.get(k);
    if (entry === undefined) {
      try {
        const cert = new X509Certificate(Buffer.from(credential));
        const valid = cert.checkIssued(ca) && cert.verify(ca.publicKey);
        entry = valid
          ? {
              cn: commonName(cert),
              publicKey: cert.publicKey,
              notBefore: Date.parse(cert.validFrom),
              notAfter: Date.parse(cert.validTo),
            }
          : null;
      } catch {
        entry = null;
      }
      checked.set(k, entry);
    }
    return entry;
  };
  return {
    credential: new Uint8Array(tls.cert),
    sign: (data) => new Uint8Array(sign('sha256', data, key)),
    verify: (memberId, credential, data, signature) => {
      const entry = load(credential);
      if (!entry || entry.cn !== memberId) return false;
      const now = Date.now();
      if (!(entry.notBefore <= now && now <= entry.notAfter)) return false;
      try {
        return verify('sha256', data, entry.publicKey, signature);
      } catch {
        return false;
      }
    },
  };
}
