// Thousands of malformed requests against a real server process: random bytes, truncated and
// mutated valid messages, wrong field types, absurd values, broken metadata. The server must
// answer every one with a status code and stay up.
import * as grpc from '@grpc/grpc-js';
import { trainingService as pb } from '@tensorguard/proto';
import { expect } from 'chai';
import crypto from 'node:crypto';
import path from 'node:path';
import { bearer, call, client, jobDocument, keyFile, startServer, tmpDir } from './helpers.js';

const KEY = 'tg_fuzz_test_key_0123456789abcdefgh';
const METHODS = ['SubmitJob', 'GetJob', 'ListJobs', 'CancelJob', 'GetPrivacyReport', 'WatchJob'] as const;

/** A client that sends raw bytes to any method. */
const RawClient = grpc.makeGenericClientConstructor(
  Object.fromEntries(
    METHODS.map((m) => [
      m,
      {
        path: `/tensorguard.v1.TrainingService/${m}`,
        requestStream: false,
        responseStream: m === 'WatchJob',
        requestSerialize: (b: Buffer) => b,
        requestDeserialize: (b: Buffer) => b,
        responseSerialize: (b: Buffer) => b,
        responseDeserialize: (b: Buffer) => b,
      },
    ]),
  ),
  'Raw',
);

function validBytes(m: (typeof METHODS)[number], rnd: () => number): Buffer {
  const doc = jobDocument({ rounds: 1 + Math.floor(rnd() * 3) });
  switch (m) {
    case 'SubmitJob':
      return Buffer.from(
        pb.SubmitJobRequest.encode({
          requestId: `f${rnd()}`,
          spec: { document: doc },
          validateOnly: true,
        }).finish(),
      );
    case 'ListJobs':
      return Buffer.from(pb.ListJobsRequest.encode({ pageSize: 3, pageToken: '', states: [1, 2] }).finish());
    case 'WatchJob':
      return Buffer.from(
        pb.WatchJobRequest.encode({ jobId: 'job-aaaaaaaaaaaaaaaaaaaaaaaaaa', afterEventId: 3 }).finish(),
      );
    default:
      return Buffer.from(pb.GetJobRequest.encode({ jobId: 'job-aaaaaaaaaaaaaaaaaaaaaaaaaa' }).finish());
  }
}

describe('TrainingService under malformed requests', function () {
  this.timeout(180_000);

  it('answers each of 3000 malformed requests with a status code and keeps serving', async () => {
    const dir = tmpDir('fuzz');
    const server = await startServer([
      '--listen',
      '127.0.0.1:0',
      '--api-keys',
      keyFile(dir, [{ id: 'k', tenant: 't', key: KEY }]),
      '--db',
      path.join(dir, 'jobs.db'),
      '--backend',
      'local-process',
      '--rate-limit',
      '100000',
      '--rate-burst',
      '100000',
      '--max-message-bytes',
      '65536',
    ]);
    const raw = new RawClient(server.address, grpc.credentials.createInsecure());
    const seed = crypto.createHash('sha256').update('fuzz').digest();
    let state = seed.readUInt32LE(0);
    const rnd = () => {
      state = (state * 1664525 + 1013904223) >>> 0;
      return state / 2 ** 32;
    };
    const codes = new Map<number, number>();
    const N = 3000;
    const one = (i: number) =>
      new Promise<void>((resolve) => {
        const m = METHODS[i % METHODS.length]!;
        let body: Buffer;
        const kind = i % 5;
        if (kind === 0) body = crypto.randomBytes(Math.floor(rnd() * 200));
        else if (kind === 1) {
          const v = validBytes(m, rnd);
          body = v.subarray(0, Math.floor(rnd() * v.length));
        } else if (kind === 2) {
          body = Buffer.from(validBytes(m, rnd));
          for (let k = 0; k < 3; k++) body[Math.floor(rnd() * body.length)] = Math.floor(rnd() * 256);
        } else if (kind === 3)
          body = crypto.randomBytes(70_000); // over the message size limit
        else body = validBytes(m, rnd);
        const md = new grpc.Metadata();
        const auth = i % 7;
        if (auth === 0)
          md.set(
            'authorization',
            crypto
              .randomBytes(20)
              .toString('latin1')
              .replace(/[^\x20-\x7e]/g, 'x'),
          );
        else if (auth === 1) md.set('authorization', 'Bearer ');
        else if (auth !== 2) md.set('authorization', `Bearer ${KEY}`);
        const record = (code: number) => {
          codes.set(code, (codes.get(code) ?? 0) + 1);
          resolve();
        };
        const opts = { deadline: Date.now() + 20_000 };
        const rawAny = raw as unknown as Record<
          string,
          (...a: unknown[]) => grpc.ClientReadableStream<Buffer>
        >;
        if (m === 'WatchJob') {
          const s = rawAny[m]!(body, md, opts);
          s.on('data', () => {});
          s.on('status', (st: grpc.StatusObject) => record(st.code));
          s.on('error', () => {});
        } else {
          rawAny[m]!(body, md, opts, (err: grpc.ServiceError | null) => record(err ? err.code : 0));
        }
      });
    for (let i = 0; i < N; i += 100) await Promise.all(Array.from({ length: 100 }, (_, k) => one(i + k)));
    const total = [...codes.values()].reduce((a, b) => a + b, 0);
    expect(total).to.equal(N);
    // Every answer is a deliberate status: no INTERNAL (no handler threw), no UNAVAILABLE (no crash).
    expect(codes.has(grpc.status.INTERNAL), JSON.stringify([...codes])).to.equal(false);
    expect(codes.has(grpc.status.UNAVAILABLE)).to.equal(false);
    expect(codes.get(grpc.status.UNAUTHENTICATED)).to.be.greaterThan(0);
    expect(codes.get(grpc.status.INVALID_ARGUMENT)).to.be.greaterThan(0);
    expect(codes.get(grpc.status.RESOURCE_EXHAUSTED)).to.be.greaterThan(0); // over the size limit
    raw.close();
    // Still serving well-formed requests.
    const c = client(server.address);
    const res = await call(c, c.listJobs, { pageSize: 1, pageToken: '', states: [] }, bearer(KEY));
    expect(res.jobs).to.be.an('array');
    c.close();
    expect(server.child.exitCode).to.equal(null);
    expect(await server.stop()).to.equal(0);
  });
});
