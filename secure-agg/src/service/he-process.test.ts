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
  HeAccumulator,
  HeEncryptor,
  SecAggError,
  toIntegers,
  withCountSlot,
  type HeAggregate,
} from '../index.js';
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

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-he-agg-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('sums the survivors when a worker is SIGKILLed during the encrypted-input stage, aborts below t; the key holder refuses forgeries and second decryptions', async () => {
    fs.writeFileSync(path.join(dir, 'key-holder.json'), JSON.stringify({ minInputs: 2, logLevel: 'warn' }));
    const kh = start(bin('key-holder'), ['--config', path.join(dir, 'key-holder.json')]);
    let agg: ReturnType<typeof start> | undefined;
    const healthy = [0, 1, 2].map((i) => ({ id: `h${i}`, client: undefined as SecureAggClient | undefined }));
    try {
      const ready = (await kh.next((l) => l.event === 'listening')) as { address: string; keyId: string };
      expect(ready.keyId).to.match(/^[0-9a-f]{16}$/);
      fs.writeFileSync(
        path.join(dir, 'aggregator.json'),
        JSON.stringify({
          scheme: 'he',
          keyHolder: ready.address,
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
      for (const h of healthy) h.client = new SecureAggClient({ address, workerId: h.id });

      // Round 0: 4 members, t = ⌊4/2⌋ + 1 = 3; the victim dies, three remain.
      const victim0 = start(workerProcess, [
        JSON.stringify({
          address,
          workerId: 'victim-0',
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
      expect(line0).to.deep.include({ event: 'round', round: 0, survivors: ['h0', 'h1', 'h2'] });
      expect(line0.sum).to.deep.equal([6, -6, 21]);
      expect(outcomes0.every((o) => o.completed)).to.equal(true);

      // Round 1: h2 stays silent and the victim dies: 2 contributions < t = 3, nothing decrypted.
      const victim1 = start(workerProcess, [
        JSON.stringify({
          address,
          workerId: 'victim-1',
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

      // The key holder itself, asked directly (as a dishonest aggregator would).
      const client = new KeyHolderClient({ address: ready.address });
      try {
        const { publicKey, keyId } = await client.publicKey();
        const encryptor = await HeEncryptor.create(publicKey);
        const sumOf = async (...vs: number[][]): Promise<HeAggregate> => {
          const acc = await HeAccumulator.create(4, 32);
          for (const v of vs) acc.add(encryptor.encrypt(withCountSlot(encodeIntegers(32, v))));
          const a = acc.result();
          acc.dispose();
          return a;
        };
        const single = await sumOf([1, 2, 3]);
        // One worker's ciphertext passed off as a sum of two: the count slot gives it away.
        const forged = await refusal(
          client.decryptSum({
            round: 7,
            contributors: ['h0', 'h1'],
            keyId,
            aggregate: { ...single, inputs: 2 },
          }),
        );
        expect(forged.message).to.equal(
          `decryptSum at the key holder ${ready.address}: round 7: the aggregate holds 1 contribution(s), not the 2 declared; nothing is returned`,
        );
        const alone = await refusal(
          client.decryptSum({ round: 8, contributors: ['h0'], keyId, aggregate: single }),
        );
        expect(alone.message).to.contain(
          'round 8: the key holder decrypts only sums of ≥ 2 contributions, got 1',
        );
        // Round 0's sum was decrypted for the aggregator: a second decryption is refused.
        const again = await refusal(
          client.decryptSum({
            round: 0,
            contributors: ['h0', 'h1'],
            keyId,
            aggregate: await sumOf([1, 1, 1], [2, 2, 2]),
          }),
        );
        expect(again.message).to.contain('round 0 was already decrypted');
        // Round 1 aborted before decryption, so the key holder never saw it: a sum is decrypted.
        const sum = await client.decryptSum({
          round: 1,
          contributors: ['h0', 'h1'],
          keyId,
          aggregate: await sumOf([1, 1, 1], [2, 2, 2]),
        });
        expect(Array.from(toIntegers(sum))).to.deep.equal([3, 3, 3]);
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

  it('the key holder binary takes --min-inputs and --tls-dir: mutual TLS, answering only the job', async () => {
    const pki = makeJobPki(fs.mkdtempSync(path.join(dir, 'pki-')), 1);
    const kh = await spawnKeyHolder(bin('key-holder'), [
      '--min-inputs',
      '3',
      '--tls-dir',
      pki.dir('aggregator'),
      '--watch-stdin',
    ]);
    const read = (role: string, f: string) => fs.readFileSync(path.join(pki.dir(role), f));
    const asAggregator = new KeyHolderClient({
      address: kh.address,
      tls: {
        rootCa: read('aggregator', 'ca.pem'),
        certChain: read('aggregator', 'cert.pem'),
        privateKey: read('aggregator', 'key.pem'),
        serverNameOverride: 'tensorguard-aggregator',
      },
    });
    const anonymous = new KeyHolderClient({
      address: kh.address,
      tls: { rootCa: read('aggregator', 'ca.pem'), serverNameOverride: 'tensorguard-aggregator' },
    });
    try {
      const link = await asAggregator.link();
      expect(link.minInputs).to.equal(3);
      expect(link.keyId).to.equal(kh.keyId);
      const err = await refusal(anonymous.link());
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
      }),
    );
    const agg = start(bin('aggregator'), ['--config', path.join(dir, 'own.json')]);
    const clients = [0, 1, 2].map((i) => ({ id: `c${i}`, client: undefined as SecureAggClient | undefined }));
    try {
      const listening = (await agg.next((l) => l.event === 'listening', 60_000)) as Record<string, unknown>;
      const pid = listening.keyHolderPid as number;
      expect(pid).to.be.a('number');
      const address = `127.0.0.1:${listening.port as number}`;
      for (const c of clients) c.client = new SecureAggClient({ address, workerId: c.id });
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
