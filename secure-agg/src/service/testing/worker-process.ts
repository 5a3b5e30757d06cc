// A worker process for service tests: joins, takes part in one round with a fixed integer vector
// and prints its outcome as JSON. With "dieAt" it stops right before sending that stage's message,
// prints {"at": stage} and waits to be killed (tests send SIGKILL). With "tlsDir" (ca.pem,
// cert.pem, key.pem) it has its job identity, which HE rounds need.
import fs from 'node:fs';
import path from 'node:path';
import { encodeIntegers, type RingBits } from '../../index.js';
import { SecureAggClient, type WorkerStage } from '../client.js';

interface Args {
  address: string;
  workerId: string;
  values: number[];
  bits: RingBits;
  minRound?: number;
  dieAt?: WorkerStage;
  tlsDir?: string;
}

const args = JSON.parse(process.argv[2] ?? '{}') as Args;
const client = new SecureAggClient({
  address: args.address,
  workerId: args.workerId,
  ...(args.tlsDir
    ? {
        jobIdentity: {
          ca: fs.readFileSync(path.join(args.tlsDir, 'ca.pem')),
          cert: fs.readFileSync(path.join(args.tlsDir, 'cert.pem')),
          key: fs.readFileSync(path.join(args.tlsDir, 'key.pem')),
        },
      }
    : {}),
  beforeStage: async (stage) => {
    if (stage !== args.dieAt) return;
    process.stdout.write(JSON.stringify({ at: stage }) + '\n');
    setInterval(() => {}, 1000);
    await new Promise(() => {});
  },
});
await client.join();
const open = await client.awaitRound(args.minRound ?? 0, 120_000);
const outcome = await client.contribute(open, encodeIntegers(args.bits, args.values));
process.stdout.write(JSON.stringify({ outcome }) + '\n');
client.close();
