// x509Identity with real certificates (openssl, ECDSA P-256, as the job's CA issues them): a
// member's signature verifies, repeatedly (the cached credential), and nothing else does.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { x509Identity } from './identity.js';
import type { TlsIdentity } from './tls.js';

/** A CA in `dir` and, for each name, a certificate it issued: TlsIdentity per name. */
function issue(dir: string, ca: string, names: string[], days = 1): Record<string, TlsIdentity> {
  const ssl = (...a: string[]) => execFileSync('openssl', a, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ssl('req', '-x509', ...ec, '-keyout', `${ca}.key`, '-out', `${ca}.pem`, '-days', '1', '-subj', `/CN=${ca}`);
  const out: Record<string, TlsIdentity> = {};
  for (const n of names) {
    ssl('req', ...ec, '-keyout', `${ca}-${n}.key`, '-out', `${ca}-${n}.csr`, '-subj', `/CN=${n}`);
    ssl(
      'x509',
      '-req',
      '-in',
      `${ca}-${n}.csr`,
      '-CA',
      `${ca}.pem`,
      '-CAkey',
      `${ca}.key`,
      '-CAcreateserial',
      '-out',
      `${ca}-${n}.pem`,
      '-days',
      String(days),
    );
    const read = (f: string) => fs.readFileSync(path.join(dir, f));
    out[n] = { ca: read(`${ca}.pem`), cert: read(`${ca}-${n}.pem`), key: read(`${ca}-${n}.key`) };
  }
  return out;
}

describe('x509Identity', () => {
  let dir: string;
  let job: Record<string, TlsIdentity>;
  let other: Record<string, TlsIdentity>;
  before(function () {
    this.timeout(30_000);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-identity-'));
    job = issue(dir, 'job-ca', ['worker-0', 'worker-1']);
    other = issue(dir, 'other-ca', ['worker-0']);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("verifies a member's signature every time it is asked (the cached credential), and refuses tampered data or signatures", () => {
    const w0 = x509Identity(job['worker-0']!);
    const w1 = x509Identity(job['worker-1']!);
    const data = new TextEncoder().encode('round 7 transcript');
    for (let round = 0; round < 3; round++) {
      const sig = w0.sign(data);
      expect(w1.verify('worker-0', w0.credential, data, sig)).to.equal(true);
      const tampered = Uint8Array.from(data);
      tampered[0]! ^= 1;
      expect(w1.verify('worker-0', w0.credential, tampered, sig)).to.equal(false);
      const badSig = Uint8Array.from(sig);
      badSig[badSig.length - 1]! ^= 1;
      expect(w1.verify('worker-0', w0.credential, data, badSig)).to.equal(false);
    }
  });

  it('refuses a certificate that names another member, one from another CA, and bytes that are no certificate', () => {
    const w0 = x509Identity(job['worker-0']!);
    const w1 = x509Identity(job['worker-1']!);
    const stranger = x509Identity(other['worker-0']!);
    const data = new TextEncoder().encode('survivors 0,1');
    // worker-0's genuine signature claimed as worker-1's, before and after the credential is cached.
    expect(w1.verify('worker-1', w0.credential, data, w0.sign(data))).to.equal(false);
    expect(w1.verify('worker-0', w0.credential, data, w0.sign(data))).to.equal(true);
    expect(w1.verify('worker-1', w0.credential, data, w0.sign(data))).to.equal(false);
    // Another job's worker-0: right name, wrong issuer.
    expect(w1.verify('worker-0', stranger.credential, data, stranger.sign(data))).to.equal(false);
    expect(w1.verify('worker-0', new Uint8Array([1, 2, 3]), data, w0.sign(data))).to.equal(false);
  });
});
