// Mutual TLS on the training link with the job's identities, made by the same code the Ray
// entrypoint runs (ray-cluster's pki.py): a job completes over TLS; a process without this job's
// certificate, or with another index's, or with another job's, takes no part.
import { SecureAggClient } from '@tensorguard/secure-agg/service';
import { AGGREGATOR_TLS_NAME, clientTls, readTlsDir } from '@tensorguard/worker';
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import {
  address,
  jobIdentities,
  killAll,
  startCoordinator,
  startWorker,
  tmpDir,
  writeConfig,
  type Proc,
} from './harness.js';

function startCoordinatorTls(config: string, tlsDir: string): Proc {
  return startCoordinator(config, { TENSORGUARD_JOIN_GRACE_MS: '500' }, ['--tls-dir', tlsDir]);
}

describe('worker + coordinator over mutual TLS with the job identities', function () {
  this.timeout(240_000);
  const dirs: string[] = [];
  after(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

  it('a job completes over TLS; the coordinator refuses a client without a certificate, with another index’s, and with another job’s', async () => {
    const dir = tmpDir('tg-tls-');
    const ids = jobIdentities('job-tls', 3);
    const other = jobIdentities('job-other', 1);
    dirs.push(dir, ...[ids, other].flatMap((i) => [i.aggregator, i.keyHolder, ...i.workers]));
    const config = writeConfig(dir, { rounds: 2 });
    const coord = startCoordinatorTls(config, ids.aggregator);
    const procs: Proc[] = [coord];
    try {
      const addr = await address(coord);
      const listening = coord.lines.find((l) => l.type === 'listening');
      expect(listening?.tls).to.equal(true);

      /** What a Join with `tls` as `workerId` gets: the gRPC status (secure-agg keeps it as the cause). */
      const join = async (tls: ConstructorParameters<typeof SecureAggClient>[0]['tls'], workerId: string) => {
        const client = new SecureAggClient({ address: addr, workerId, tls, callTimeoutMs: 5000 });
        try {
          await client.join(1);
          return null;
        } catch (err) {
          return { message: (err as Error).message, code: ((err as Error).cause as { code: number }).code };
        } finally {
          client.close();
        }
      };

      // No certificate: the handshake fails, nothing reaches a handler.
      const ca = fs.readFileSync(path.join(ids.workers[0]!, 'ca.pem'));
      const noCert = await join({ rootCa: ca, serverNameOverride: AGGREGATOR_TLS_NAME }, 'worker-0');
      expect(noCert, 'a client without a certificate').to.not.equal(null);
      expect(noCert!.code).to.equal(14); // UNAVAILABLE: TLS handshake refused

      // Worker 1's certificate claiming to be worker 2: PERMISSION_DENIED, and a log line names it.
      const impostor = await join(clientTls(readTlsDir(ids.workers[1]!)), 'worker-2');
      expect(impostor!.code).to.equal(7); // PERMISSION_DENIED
      expect(impostor!.message).to.contain('names "worker-1", but the request claims worker "worker-2"');

      // Another job's worker 0: its CA is not this job's, the handshake fails.
      const stranger = await join(clientTls(readTlsDir(other.workers[0]!)), 'worker-0');
      expect(stranger!.code).to.equal(14);

      const ws = [0, 1, 2].map((i) => startWorker(config, i, addr, {}, ['--tls-dir', ids.workers[i]!]));
      procs.push(...ws);
      const done = await coord.waitFor((l) => l.type === 'done', 180_000);
      expect(done.status, JSON.stringify(done)).to.equal('succeeded');
      expect(done.rounds).to.equal(2);
      expect(await Promise.all(ws.map((w) => w.exited))).to.deep.equal([0, 0, 0]);
      expect(coord.stderr.join('')).to.match(
        /"method":"join","peer":"[^"]+","certificateName":"worker-1","claimedWorkerId":"worker-2","msg":"refused a call whose certificate does not name the worker it claims to be"/,
      );
    } finally {
      killAll(procs);
    }
  });

  it('without the job identities the coordinator refuses to listen anywhere but loopback', async () => {
    const dir = tmpDir('tg-notls-');
    dirs.push(dir);
    const coord = startCoordinator(writeConfig(dir, {}), {}, ['--listen', '0.0.0.0']);
    try {
      const done = await coord.waitFor((l) => l.type === 'done', 60_000);
      expect(done.status).to.equal('failed');
      expect(done.error).to.contain('refusing to listen on 0.0.0.0 without TLS');
      expect(await coord.exited).to.equal(1);
      expect(coord.lines.some((l) => l.type === 'listening')).to.equal(false);
    } finally {
      killAll([coord]);
    }
  });
});
