// A process that tries to take part in a job it holds no (or another) identity for:
//   node --conditions=tensorguard-source --import tsx test/ray/rogue-client.ts ADDRESS WORKER_ID [TLS_DIR]
// Calls Join of secure-agg's aggregator service as WORKER_ID, over mTLS with TLS_DIR's certificate
// when given, else in plaintext (which a TLS-only aggregator refuses at the handshake). Prints
// one JSON line: {"code": <gRPC status or 0>, "message": ...}. Run by the multi-node tests inside
// the second node's network namespace.
import { SecureAggClient } from '@tensorguard/secure-agg/service';
import { clientTls, readTlsDir } from '@tensorguard/worker';

const [address, workerId, tlsDir] = process.argv.slice(2);
if (!address || !workerId) throw new Error('usage: rogue-client.ts ADDRESS WORKER_ID [TLS_DIR]');
const client = new SecureAggClient({
  address,
  workerId,
  ...(tlsDir ? { tls: clientTls(readTlsDir(tlsDir)) } : {}),
  callTimeoutMs: 10_000,
});
try {
  await client.join(1);
  console.log(JSON.stringify({ code: 0, message: 'joined' }));
} catch (err) {
  const e = err as Error & { cause?: { code?: number } };
  console.log(JSON.stringify({ code: e.cause?.code ?? -1, message: e.message }));
} finally {
  client.close();
}
