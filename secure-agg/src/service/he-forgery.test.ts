// Issue 15: a dishonest aggregator holds the BFV public key, so it can encrypt anything itself.
// Against the real key holder gRPC service over mutual TLS, with real workers' padded ciphertexts:
// one worker's ciphertext plus the aggregator's own encryptions declared as k contributors is
// refused and returns nothing; so are a replayed nonce, a nonce not issued, a contributor
// certificate from another CA and callers that are not the aggregator; the honest sum decrypts.
import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  encodeIntegers,
  HE_CHECK_SLOTS,
  HeAccumulator,
  HeEncryptor,
  JobPki,
  toIntegers,
  type HeContributor,
  type HeRoundVoucher,
} from '../index.js';
import { KeyHolderClient } from './key-holder-client.js';
import { KeyHolderServer } from './key-holder-server.js';
import { makeJobPki } from './testing/pki.js';
import { honestContribution } from '../testing/he-worker.js';

async function refusal(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected the key holder to refuse');
}

describe('HE key holder over mutual TLS: forgeries by a dishonest aggregator are refused', function () {
  this.timeout(180_000);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-forge-'));
  const pki = makeJobPki(fs.mkdirSync(path.join(root, 'job'), { recursive: true })!, 3);
  const other = makeJobPki(fs.mkdirSync(path.join(root, 'other'), { recursive: true }) ?? '', 3);
  let server: KeyHolderServer;
  let client: KeyHolderClient;
  let enc: HeEncryptor;
  let publicKey: Uint8Array;
  let keyId: string;
  const workers = [0, 1, 2].map((i) => new JobPki(pki.identity(`worker-${i}`)));
  const inputs = [
    [5, -7, 100],
    [1, 2, 3],
    [-4, 0, 9],
  ].map((v) => encodeIntegers(32, v));
  const D = 3;
  const who = (i: number): HeContributor => ({ id: `worker-${i}`, certificate: workers[i]!.certPem });
  const tlsOf = (role: string, p = pki) => {
    const id = p.identity(role);
    return { rootCa: id.ca, certChain: id.cert, privateKey: id.key };
  };
  /** The aggregate of `chunks` lists (what the aggregator computes; it may add its own). */
  const sum = async (lists: Uint8Array[][]) => {
    const acc = await HeAccumulator.create(D + HE_CHECK_SLOTS, 32);
    for (const c of lists) acc.add(c);
    const agg = acc.result();
    acc.dispose();
    return agg;
  };
  const contribution = (i: number, v: HeRoundVoucher) =>
    honestContribution(workers[i]!, enc, v.certificate, publicKey, v.nonce, inputs[i]!).chunks;

  before(async () => {
    server = await KeyHolderServer.create({ identity: pki.identity('key-holder'), minInputs: 2 });
    await server.start();
    client = new KeyHolderClient({ address: `127.0.0.1:${server.port}`, tls: tlsOf('aggregator') });
    ({ publicKey, keyId } = await client.publicKey());
    enc = await HeEncryptor.create(publicKey);
  });
  after(async () => {
    client.close();
    await server.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('the honest sum of 3 workers decrypts, once per nonce; the replay is refused', async () => {
    const v = await client.openRound(1);
    const agg = await sum([0, 1, 2].map((i) => contribution(i, v)));
    const req = { round: 1, nonce: v.nonce, keyId, contributors: [0, 1, 2].map(who), aggregate: agg };
    expect(Array.from(toIntegers(await client.decryptSum(req)))).to.deep.equal([2, -5, 112]);
    const again = await refusal(client.decryptSum(req));
    expect(again.message).to.match(/this nonce was already decrypted \(or refused\)/);
  });

  it("one worker's ciphertext plus the aggregator's own encryptions, declared as 3 contributors, is refused", async () => {
    const v = await client.openRound(2);
    const victim = contribution(0, v);
    // The aggregator's best guesses for the other two: its own encryptions of anything (zeros, or
    // values in the check slots); it does not know their pads.
    const own = await HeEncryptor.create(publicKey);
    const fake = own.encryptResidues(new BigUint64Array(D + HE_CHECK_SLOTS));
    const guess = own.encryptResidues(BigUint64Array.from([0n, 0n, 0n, 1n, 1n]));
    const forged = await sum([victim, fake, guess]);
    const err = await refusal(
      client.decryptSum({
        round: 2,
        nonce: v.nonce,
        keyId,
        contributors: [0, 1, 2].map(who),
        aggregate: forged,
      }),
    );
    expect(err.message).to.match(/not the sum of the 3 declared contributors' inputs .* nothing is returned/);
    // The nonce is spent: the honest sum is not decrypted under it afterwards either.
    const honest = await sum([0, 1, 2].map((i) => contribution(i, v)));
    const later = await refusal(
      client.decryptSum({
        round: 2,
        nonce: v.nonce,
        keyId,
        contributors: [0, 1, 2].map(who),
        aggregate: honest,
      }),
    );
    expect(later.message).to.match(/already decrypted \(or refused\)/);
  });

  it('a nonce the key holder did not issue is refused', async () => {
    const v = await client.openRound(3);
    const made = { ...v, nonce: new Uint8Array(32).fill(9) };
    const agg = await sum([0, 1].map((i) => contribution(i, made)));
    const err = await refusal(
      client.decryptSum({
        round: 3,
        nonce: made.nonce,
        keyId,
        contributors: [0, 1].map(who),
        aggregate: agg,
      }),
    );
    expect(err.message).to.match(/did not issue the nonce/);
  });

  it('a contributor certificate from another CA is refused, even one naming that worker', async () => {
    const v = await client.openRound(4);
    const agg = await sum([0, 1].map((i) => contribution(i, v)));
    const foreign = { id: 'worker-1', certificate: new Uint8Array(other.identity('worker-1').cert) };
    const err = await refusal(
      client.decryptSum({ round: 4, nonce: v.nonce, keyId, contributors: [who(0), foreign], aggregate: agg }),
    );
    expect(err.message).to.match(
      /contributor worker-1: the certificate offered for worker-1 is not issued by the job's CA/,
    );
  });

  it('only the aggregator may open rounds or ask for decryptions; other CAs cannot connect', async () => {
    const asWorker = new KeyHolderClient({ address: `127.0.0.1:${server.port}`, tls: tlsOf('worker-0') });
    try {
      const err = await refusal(asWorker.openRound(5));
      expect(err.message).to.match(/only the aggregator \(tensorguard-aggregator\) may call OpenRound/);
    } finally {
      asWorker.close();
    }
    const stranger = new KeyHolderClient({
      address: `127.0.0.1:${server.port}`,
      tls: { ...tlsOf('aggregator', other), rootCa: pki.identity('aggregator').ca },
    });
    try {
      await refusal(stranger.openRound(6));
    } finally {
      stranger.close();
    }
  });
});
