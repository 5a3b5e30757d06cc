// Tests only: a job's certificates in the `--tls-dir` layout (ca.pem, cert.pem, key.pem per role),
// made with the openssl CLI the way the driver's per-job CA issues them: the aggregator's
// certificate names 'tensorguard-aggregator' (CN and DNS SAN, plus loopback), the HE key holder's
// 'tensorguard-key-holder', a worker's worker-<index>. Real X.509 and real TLS; only the issuing is
// simplified.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/**
 * Writes `<root>/<role>/{ca,cert,key}.pem` for 'aggregator', 'key-holder' and worker-0 …
 * worker-(workers-1); `identity(role)` reads one back.
 */
export function makeJobPki(
  root: string,
  workers: number,
): { dir: (role: string) => string; identity: (role: string) => { ca: Buffer; cert: Buffer; key: Buffer } } {
  const ssl = (...a: string[]) => execFileSync('openssl', a, { cwd: root, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=tg-test-ca');
  const roles: [string, string, string][] = [
    [
      'aggregator',
      'tensorguard-aggregator',
      'subjectAltName=DNS:tensorguard-aggregator,DNS:localhost,IP:127.0.0.1\n',
    ],
    [
      'key-holder',
      'tensorguard-key-holder',
      'subjectAltName=DNS:tensorguard-key-holder,DNS:localhost,IP:127.0.0.1\n',
    ],
    ...Array.from({ length: workers }, (_, i): [string, string, string] => [
      `worker-${i}`,
      `worker-${i}`,
      'extendedKeyUsage=clientAuth\n',
    ]),
  ];
  for (const [role, cn, ext] of roles) {
    const out = path.join(root, role);
    fs.mkdirSync(out, { recursive: true });
    ssl('req', ...ec, '-keyout', `${role}/key.pem`, '-out', `${role}.csr`, '-subj', `/CN=${cn}`);
    fs.writeFileSync(path.join(root, `${role}.ext`), ext);
    ssl(
      'x509',
      '-req',
      '-in',
      `${role}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${role}/cert.pem`,
      '-days',
      '1',
      '-extfile',
      `${role}.ext`,
    );
    fs.copyFileSync(path.join(root, 'ca.pem'), path.join(out, 'ca.pem'));
  }
  const dir = (role: string) => path.join(root, role);
  const identity = (role: string) => ({
    ca: fs.readFileSync(path.join(dir(role), 'ca.pem')),
    cert: fs.readFileSync(path.join(dir(role), 'cert.pem')),
    key: fs.readFileSync(path.join(dir(role), 'key.pem')),
  });
  return { dir, identity };
}
