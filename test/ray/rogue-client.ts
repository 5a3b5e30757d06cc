// A process that tries to take part in a job it holds no (or another) identity for:
//   node --conditions=tensorguard-source --import tsx test/ray/rogue-client.ts ADDRESS WORKER_ID [TLS_DIR]
// Calls Join as WORKER_ID, with TLS_DIR's certificate when given, else without one. Prints one
// JSON line: {"code": <gRPC status or 0>, "message": ...}. Run by the multi-node tests inside the
// second node's network namespace.
import { RoundServiceClient } from '@tensorguard/worker';
import fs from 'node:fs';
import path from 'node:path';

const [address, workerId, tlsDir] = process.argv.slice(2);
if (!address || !workerId) throw new Error('usage: rogue-client.ts ADDRESS WORKER_ID [TLS_DIR]');
const read = (f: string) => fs.readFileSync(path.join(tlsDir!, f));
const client = new RoundServiceClient(
  address,
  tlsDir ? { ca: read('ca.pem'), cert: read('cert.pem'), key: read('key.pem') } : undefined,
);
const index = Number(workerId.replace(/^worker-/, ''));
try {
  await client.call('Join', { workerId, workerIndex: index, shardSize: 1 }, 10_000);
  console.log(JSON.stringify({ code: 0, message: 'joined' }));
} catch (err) {
  const e = err as Error & { code?: number };
  console.log(JSON.stringify({ code: e.code ?? -1, message: e.message }));
} finally {
  client.close();
}
