// What the transport costs per round: a client keeps one connection (one TLS handshake) for all its
// calls and rounds, and messages larger than HTTP/2's 64 KiB window cross it whole. The aggregator
// is reached through a TCP relay that counts the connections made to it; everything else is real
// (gRPC over mutual TLS with certificates from openssl, the job's identities signing each round).
import { expect } from 'chai';
import { createPrivateKey, sign, verify, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { TLSSocket } from 'node:tls';
import { encodeIntegers, toIntegers, type RoundIdentity } from '../index.js';
import { AggregatorServer, SecureAggClient } from './index.js';
import { makeJobPki } from './testing/pki.js';

const FAST = { ADVERTISE_KEYS: 3000, SHARE_KEYS: 3000, MASKED_INPUT: 3000, UNMASK: 3000 };

/** A TCP relay to `port` on loopback that counts the connections it accepted. */
async function relay(
  port: number,
): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((inbound) => {
    connections++;
    const outbound = net.connect(port, '127.0.0.1');
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('error', () => {
        inbound.destroy();
        outbound.destroy();
      });
      s.on('close', () => sockets.delete(s));
    }
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => connections,
    close: () =>
      new Promise<void>((resolve) => {
        sockets.forEach((s) => s.destroy());
        server.close(() => resolve());
      }),
  };
}

describe('transport: one connection per client, whole messages, one certificate read per connection', function () {
  this.timeout(60_000);
  let dir: string;
  let pki: ReturnType<typeof makeJobPki>;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-transport-'));
    pki = makeJobPki(dir, 3);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const pem = (role: string, f: string) => fs.readFileSync(path.join(pki.dir(role), f));
  const identityOf = (name: string): RoundIdentity => {
    const ca = new X509Certificate(pem(name, 'ca.pem'));
    const key = createPrivateKey(pem(name, 'key.pem'));
    return {
      credential: pem(name, 'cert.pem'),
      sign: (data) => sign('sha256', data, key),
      verify: (member, credential, data, signature) => {
        const cert = new X509Certificate(Buffer.from(credential));
        return (
          cert.checkIssued(ca) &&
          cert.verify(ca.publicKey) &&
          /^CN=(.*)$/m.exec(cert.subject)?.[1] === member &&
          verify('sha256', data, cert.publicKey, signature)
        );
      },
    };
  };

  it('runs four signed rounds and 300 KB GetModel answers over mutual TLS with one handshake and one certificate read per client', async () => {
    const d = 75_000; // 300 KB of parameters, 4.6 times HTTP/2's initial window
    const parameters = Float32Array.from({ length: d }, (_, i) => i / d);
    const version = { round: 0, fingerprint: 'f0' };
    const server = new AggregatorServer({
      vectorLength: 2,
      bits: 32,
      deadlinesMs: FAST,
      tls: {
        certChain: pem('aggregator', 'cert.pem'),
        privateKey: pem('aggregator', 'key.pem'),
        clientCa: pem('aggregator', 'ca.pem'),
      },
      model: (v) => (v.round === 0 ? { version, parameters } : undefined),
      maxMessageBytes: 4 << 20,
    });
    const port = await server.start();
    const hop = await relay(port);
    // Certificate reads on this process's TLS sockets: per connection, the client's server-name check,
    // grpc-js's client transport, and the aggregator's peer check, once for all the calls it carries.
    const original = TLSSocket.prototype.getPeerCertificate;
    let reads = 0;
    TLSSocket.prototype.getPeerCertificate = function (this: TLSSocket, ...args: unknown[]) {
      reads++;
      return (original as (...a: unknown[]) => ReturnType<typeof original>).apply(this, args);
    } as typeof original;
    const clients = [0, 1, 2].map(
      (i) =>
        new SecureAggClient({
          address: `127.0.0.1:${hop.port}`,
          workerId: `worker-${i}`,
          tls: {
            rootCa: pem(`worker-${i}`, 'ca.pem'),
            certChain: pem(`worker-${i}`, 'cert.pem'),
            privateKey: pem(`worker-${i}`, 'key.pem'),
            serverNameOverride: 'tensorguard-aggregator',
          },
          identity: identityOf(`worker-${i}`),
          maxMessageBytes: 4 << 20,
        }),
    );
    try {
      for (const c of clients) await c.join();
      for (let r = 0; r < 4; r++) {
        const pending = server.openRound({ modelVersion: version });
        const outcomes = await Promise.all(
          clients.map(async (c, i) => {
            const open = await c.awaitRound(r);
            const model = await c.getModel(version, d);
            expect(model.parameters).to.deep.equal(parameters);
            return c.contribute(open, encodeIntegers(32, [i, r]));
          }),
        );
        expect(outcomes.map((o) => o.completed)).to.deep.equal([true, true, true]);
        expect(Array.from(toIntegers((await pending).ring))).to.deep.equal([3, 3 * r]);
      }
      // Join, four rounds of AwaitRound, GetModel and five stages each: still one connection a client.
      expect(hop.connections()).to.equal(3);
      // 3 × (Join + 4 × (AwaitRound, GetModel, 5 stages)) = 87 calls checked, 3 × 3 certificates read.
      expect(reads).to.equal(9);
    } finally {
      TLSSocket.prototype.getPeerCertificate = original;
      clients.forEach((c) => c.close());
      await server.close();
      await hop.close();
    }
  });
});
