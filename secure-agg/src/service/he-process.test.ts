// HE scheme with real processes over loopback: the key holder started by its command, the
// aggregator (scheme "he") by its, one worker per round as a child process killed with SIGKILL
// right before it sends its encrypted input, and healthy workers. Then the key holder's own
// refusals, and an aggregator that starts its key holder as a child.
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
  SecAggError,
  toIntegers,
} from '../index.js';
import { honestContribution } from '../testing/he-worker.js';
import { KeyHolderClient, SecureAggClient, spawnKeyHolder } from './index.js';
import { makeJobPki } from './testing/pki.js';
import { exited, pkg, start } from './testing/processes.js';

const bin = (name: string) => path.join(pkg, 'src', 'bin', `${name}.ts`);
const workerProcess = path.join(pkg, 'src', 'service', 'testing', 'worker-process.ts');

async function refusal(p: Promise<unknown>): Promise<SecAggError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof SecAggError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

describe('service, HE scheme (real processes)', function () {
  this.timeout(120_000);
  let dir: string;
  let pki: ReturnType<typeof makeJobPki>;
  const pem = (role: string, f: string) => path.join(pki.dir(role), f);
  /** The aggregator's mutual TLS to the key holder, as its config file names it. */
  const keyHolderTls = () => ({
    rootCa: pem('aggregator', 'ca.pem'),
    cert: pem('aggregator', 'cert.pem'),
    key: pem('aggregator', 'key.pem'),
  });
  const aggTls = () => {
    const id = pki.identity('aggregator');
    return { rootCa: id.ca, certChain: id.cert, privateKey: id.key };
  };
  const worker = (address: string, i: number) =>
    new SecureAggClient({ address, workerId: `worker-${i}`, jobIdentity: pki.identity(`worker-${i}`) });

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-he-agg-'));
    pki = makeJobPki(fs.mkdtempSync(path.join(dir, 'pki-')), 5);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('sums the survivors when a worker is SIGKILLed during the encrypted-input stage, aborts below t; the key holder refuses forgeries and second decryptions', async () => {
    fs.writeFileSync(
      path.join(dir, 'key-holder.json'),
      JSON.stringify({
        minInputs: 2,
        logLevel: 'warn',
        tls: {
          cert: pem('key-holder', 'cert.pem'),
          key: pem('key-holder', 'key.pem'),
          clientCa: pem('key-holder', 'ca.pem'),
        },
      }),
    );
    const kh = start(bin('key-holder'), ['--config', path.join(dir, 'key-holder.json')]);
    let agg: ReturnType<typeof start> | undefined;
    const healthy = [0, 1, 2].map((i) => ({ i, client: undefined as SecureAggClient | undefined }));
    try {
      const ready = (await kh.next((l) => l.event === 'listening')) as { address: string; keyId: string };
      expect(ready.keyId).to.match(/^[0-9a-f]{16}$/);
      fs.writeFileSync(
        path.join(dir, 'aggregator.json'),
        JSON.stringify({
          scheme: 'he',
          keyHolder: ready.address,
          keyHolderTls: keyHolderTls(),
          vectorLength: 3,
          bits: 32,
          minMembers: 4,
          rounds: 2,
          printSums: true,
          logLevel: 'warn',
          deadlinesMs: { ENCRYPTED_INPUT: 3000 },
        }),
      );
      agg = start(bin('aggregator'), ['--config', path.join(dir, 'aggregator.json')]);
      const listening = (await agg.next((l) => l.event === 'listening')) as Record<string, unknown>;
      expect(listening).to.deep.include({ scheme: 'he', keyHolder: ready.address, keyId: ready.keyId });
      const address = `127.0.0.1:${listening.port as number}`;
      for (const h of healthy) h.client = worker(address, h.i);

      // Round 0: 4 members, t = ⌊4/2⌋ + 1 = 3; the victim dies, three remain.
      const victim0 = start(workerProcess, [
        JSON.stringify({
          address,
          workerId: 'worker-3',
          tlsDir: pki.dir('worker-3'),
          values: [1000, 2000, 3000],
          bits: 32,
          dieAt: 'ENCRYPTED_INPUT',
        }),
      ]);
      const work0 = healthy.map(async ({ client }, i) => {
        await client!.join();
        const open = await client!.awaitRound(0, 60_000);
        expect(open.scheme).to.equal('he');
        return client!.contribute(open, encodeIntegers(32, [i + 1, -(i + 1), 7]));
      });
      await victim0.next((l) => l.at === 'ENCRYPTED_INPUT');
      victim0.child.kill('SIGKILL');
      expect(await exited(victim0.child)).to.equal('SIGKILL');
      const outcomes0 = await Promise.all(work0);
      const line0 = (await agg.next((l) => l.event === 'round' || l.event === 'abort')) as Record<
        string,
        unknown
      >;
      expect(line0).to.deep.include({
        event: 'round',
        round: 0,
        survivors: ['worker-0', 'worker-1', 'worker-2'],
      });
      expect(line0.sum).to.deep.equal([6, -6, 21]);
      expect(outcomes0.every((o) => o.completed)).to.equal(true);

      // Round 1: h2 stays silent and the victim dies: 2 contributions < t = 3, nothing decrypted.
      const victim1 = start(workerProcess, [
        JSON.stringify({
          address,
          workerId: 'worker-4',
          tlsDir: pki.dir('worker-4'),
          values: [1, 1, 1],
          bits: 32,
          minRound: 1,
          dieAt: 'ENCRYPTED_INPUT',
        }),
      ]);
      const work1 = healthy.slice(0, 2).map(async ({ client }) => {
        const open = await client!.awaitRound(1, 60_000);
        return client!.contribute(open, encodeIntegers(32, [5, 5, 5]));
      });
      await victim1.next((l) => l.at === 'ENCRYPTED_INPUT');
      victim1.child.kill('SIGKILL');
      await exited(victim1.child);
      const outcomes1 = await Promise.all(work1);
      const line1 = (await agg.next((l) => l.event === 'round' || l.event === 'abort')) as Record<
        string,
        unknown
      >;
      expect(line1).to.deep.equal({
        event: 'abort',
        code: 'BELOW_THRESHOLD',
        reason:
          'round 1 aborted after ENCRYPTED_INPUT: 2 contributions arrived, fewer than the 3 required; nothing was decrypted',
      });
      expect(outcomes1.every((o) => !o.completed && o.reason.includes('nothing was decrypted'))).to.equal(
        true,
      );

      // The key holder process itself, asked directly (as a dishonest aggregator would; only the
      // aggregator's certificate is answered at all).
      const client = new KeyHolderClient({ address: ready.address, tls: aggTls() });
      try {
        const { publicKey, keyId } = await client.publicKey();
        const encryptor = await HeEncryptor.create(publicKey);
        const workers = [0, 1].map((i) => new JobPki(pki.identity(`worker-${i}`)));
        const who = (i: number) => ({ id: `worker-${i}`, certificate: workers[i]!.certPem });
        const ask = async (round: number, use: number[], declare: number[], nonce?: Uint8Array) => {
          const v = await client.openRound(round);
          const acc = await HeAccumulator.create(3 + HE_CHECK_SLOTS, 32);
          for (const i of use)
            acc.add(
              honestContribution(
                workers[i]!,
                encryptor,
                v.certificate,
                publicKey,
                v.nonce,
                encodeIntegers(32, [i + 1, 1, 1]),
              ).chunks,
            );
          const aggregate = acc.result();
          acc.dispose();
          const req = { round, nonce: nonce ?? v.nonce, contributors: declare.map(who), keyId, aggregate };
          return { req, sum: () => client.decryptSum(req) };
        };
        // One worker's ciphertext passed off as a sum of two: its partner's pad is never removed.
        const forged = await refusal((await ask(7, [0], [0, 1])).sum());
        expect(forged.message).to.match(
          /round 7: the aggregate is not the sum of the 2 declared contributors' inputs/,
        );
        const alone = await refusal((await ask(8, [0], [0])).sum());
        expect(alone.message).to.contain(
          'round 8: the key holder decrypts only sums of ≥ 2 contributions, got 1',
        );
        const unknown = await refusal((await ask(9, [0, 1], [0, 1], new Uint8Array(32).fill(1))).sum());
        expect(unknown.message).to.contain('round 9: this key holder did not issue the nonce');
        const honest = await ask(10, [0, 1], [0, 1]);
        expect(Array.from(toIntegers(await honest.sum()))).to.deep.equal([3, 2, 2]);
        const again = await refusal(honest.sum());
        expect(again.message).to.contain('round 10: this nonce was already decrypted');
      } finally {
        client.close();
      }
      expect(await exited(agg.child)).to.equal(0); // rounds: 2
    } finally {
      healthy.forEach((h) => h.client?.close());
      agg?.child.kill('SIGKILL');
      kh.child.kill('SIGTERM');
      await exited(kh.child);
    }
  });

  it('the key holder binary takes --min-inputs and --tls-dir (its own identity): mutual TLS, answering only the job', async () => {
    const kh = await spawnKeyHolder(bin('key-holder'), [
      '--min-inputs',
      '3',
      '--tls-dir',
      pki.dir('key-holder'),
      '--watch-stdin',
    ]);
    const asAggregator = new KeyHolderClient({ address: kh.address, tls: aggTls() });
    const anonymous = new KeyHolderClient({ address: kh.address, tls: { rootCa: aggTls().rootCa } });
    try {
      const link = await asAggregator.link();
      expect(link.minInputs).to.equal(3);
      expect(link.keyId).to.equal(kh.keyId);
      const err = await refusal(anonymous.link(500));
      expect(err.code).to.equal('UNAVAILABLE');
    } finally {
      asAggregator.close();
      anonymous.close();
      await kh.close();
    }
  });

  it('starts its own key holder as a child when the config names none, and it dies with the aggregator', async () => {
    fs.writeFileSync(
      path.join(dir, 'own.json'),
      JSON.stringify({
        scheme: 'he',
        vectorLength: 2,
        bits: 64,
        minMembers: 3,
        logLevel: 'warn',
        printSums: true,
        keyHolderTls: keyHolderTls(),
        keyHolderTlsDir: pki.dir('key-holder'),
      }),
    );
    const agg = start(bin('aggregator'), ['--config', path.join(dir, 'own.json')]);
    const clients = [0, 1, 2].map((i) => ({ i, client: undefined as SecureAggClient | undefined }));
    try {
      const listening = (await agg.next((l) => l.event === 'listening', 60_000)) as Record<string, unknown>;
      const pid = listening.keyHolderPid as number;
      expect(pid).to.be.a('number');
      const address = `127.0.0.1:${listening.port as number}`;
      for (const c of clients) c.client = worker(address, c.i);
      await Promise.all(
        clients.map(async ({ client }, i) => {
          await client!.join();
          return client!.contribute(await client!.awaitRound(0, 60_000), encodeIntegers(64, [i, -1e15]));
        }),
      );
      const line = (await agg.next((l) => l.event === 'round')) as Record<string, unknown>;
      expect(line.sum).to.deep.equal([3, -3e15]);
      agg.child.kill('SIGKILL');
      await exited(agg.child);
      const alive = () => {
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      };
      for (let i = 0; i < 100 && alive(); i++) await new Promise((r) => setTimeout(r, 100));
      expect(alive()).to.equal(false);
    } finally {
      clients.forEach((c) => c.client?.close());
      agg.child.kill('SIGKILL');
    }
  });
});
