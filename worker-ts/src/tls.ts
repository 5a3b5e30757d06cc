// The job's mutual-TLS identities as the worker and the coordinator read them (`--tls-dir`, written
// by ray-cluster's pki.py), and their translation into secure-agg's server and client options. Who
// may act as which worker is secure-agg's rule (AggregatorServer: the certificate's common name is
// the only worker id it accepts); this file only reads PEM files and names the aggregator.
import fs from 'node:fs';
import path from 'node:path';
import type { ClientTlsOptions, ServerTlsOptions } from '@tensorguard/secure-agg/service';

/** `ca` signs every party's certificate; `cert`/`key` are this party's. PEM bytes. */
export interface TlsIdentity {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/** The name every worker verifies on the aggregator's certificate, whatever address it dials. */
export const AGGREGATOR_TLS_NAME = 'tensorguard-aggregator';

/** Reads ca.pem, cert.pem and key.pem from `dir`; throws naming the directory and the file. */
export function readTlsDir(dir: string): TlsIdentity {
  const read = (f: string) => {
    try {
      return fs.readFileSync(path.join(dir, f));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      throw new Error(
        `--tls-dir ${dir}: cannot read ${f} (${code}); pass the directory the job's pki.py wrote`,
      );
    }
  };
  return { ca: read('ca.pem'), cert: read('cert.pem'), key: read('key.pem') };
}

/** The aggregator's side: TLS only, and a client certificate signed by the job's CA required. */
export function serverTls(id: TlsIdentity): ServerTlsOptions {
  return { certChain: id.cert, privateKey: id.key, clientCa: id.ca };
}

/** A worker's side: its certificate, and the aggregator verified as AGGREGATOR_TLS_NAME. */
export function clientTls(id: TlsIdentity): ClientTlsOptions {
  return { rootCa: id.ca, certChain: id.cert, privateKey: id.key, serverNameOverride: AGGREGATOR_TLS_NAME };
}
