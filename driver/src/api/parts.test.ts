// Unit tests of the API's parts: status details, API keys, rate limits, the job store.
import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ApiKeyStore, hashKeyScrypt, hashKeySha256, keyProblem } from './edge/api-keys.js';
import { ApiError } from './edge/errors.js';
import { canonicalJson } from './jobs/privacy-report.js';
import { RateLimiter } from './edge/rate-limit.js';
import { peerAddress } from './edge/server.js';
import { decodeStatus, encodeStatus } from './edge/status-details.js';
import { JobStore, StoreLockedError } from './jobs/store.js';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'tg-api-unit-'));

describe('api/status-details', () => {
  it('encodes google.rpc.Status with every detail kind and decodes it back', () => {
    const details = {
      badRequest: [
        { field: 'spec.document.rounds', description: 'must be an integer ≥ 1' },
        { field: 'request_id', description: 'is required' },
      ],
      preconditionFailure: [{ type: 'PRIVACY_BUDGET', subject: 's', description: 'd' }],
      retryDelayMs: 1250,
      errorInfo: { reason: 'RATE_LIMITED', domain: 'tensorguard.dev', metadata: { a: '1', b: '2' } },
    };
    expect(decodeStatus(encodeStatus(3, 'bad', details))).to.deep.equal({ code: 3, message: 'bad', details });
  });

  it('lists every violation in the INVALID_ARGUMENT message', () => {
    const e = ApiError.invalidArgument([
      { field: 'a.b', description: 'x' },
      { field: 'c', description: 'y' },
    ]);
    expect(e.message).to.equal('invalid request (2 problems):\n  a.b: x\n  c: y');
    expect(e.grpcCode).to.equal(3);
    expect(ApiError.from(new Error('secret internals')).message).to.not.include('secret');
  });
});

describe('api/api-keys', () => {
  it('accepts sha256 and scrypt keys, refuses unknown and revoked ones, and reports bad files', async () => {
    const dir = tmp();
    const file = path.join(dir, 'keys.yaml');
    fs.writeFileSync(
      file,
      `keys:
  - id: a
    tenant: team-a
    hash: ${hashKeySha256('key-a')}
  - id: s
    tenant: team-s
    hash: "${await hashKeyScrypt('chosen-passphrase')}"
    scopes: [jobs.read]
  - id: r
    tenant: team-a
    hash: ${hashKeySha256('key-r')}
    revoked: true
`,
    );
    const store = new ApiKeyStore(file);
    const a = await store.authenticate('Bearer key-a');
    expect(a.ok && a.entry.tenant).to.equal('team-a');
    const s = await store.authenticate('bearer chosen-passphrase');
    expect(s.ok && s.entry.scopes).to.deep.equal(['jobs.read']);
    // Spaces are allowed: `serve --hash-key` hashes passphrases with them.
    expect(await store.authenticate('Bearer two words')).to.deep.equal({ ok: false, reason: 'unknown' });
    expect(await store.authenticate('Bearer tab\there')).to.deep.equal({ ok: false, reason: 'malformed' });
    expect(await store.authenticate(undefined)).to.deep.equal({ ok: false, reason: 'missing' });
    expect(await store.authenticate('Bearer nope')).to.deep.equal({ ok: false, reason: 'unknown' });
    expect(await store.authenticate('Bearer key-r')).to.deep.equal({ ok: false, reason: 'revoked' });
    fs.writeFileSync(file, 'keys:\n  - id: x y\n    tenant: ""\n    hash: md5:abc\n');
    expect(() => store.reload()).to.throw(/keys\.0\.id: .*\n.*keys\.0\.tenant: .*\n.*keys\.0\.hash: must be/);
    // The previous keys stay in force after a rejected reload.
    expect((await store.authenticate('Bearer key-a')).ok).to.equal(true);
  });

  it('verifies a scrypt-hashed key and caches the match', async () => {
    const dir = tmp();
    const file = path.join(dir, 'keys.yaml');
    fs.writeFileSync(
      file,
      `keys:\n  - id: s\n    tenant: t\n    hash: "${await hashKeyScrypt('Correct-Horse-9')}"\n`,
    );
    let hashes = 0;
    const store = new ApiKeyStore(file, { onScrypt: () => (hashes += 1) });
    expect((await store.authenticate('Bearer Correct-Horse-9')).ok).to.equal(true);
    expect((await store.authenticate('Bearer Correct-Horse-9')).ok).to.equal(true);
    expect(hashes).to.equal(1);
    expect((await store.authenticate('Bearer Correct-Horse-8')).ok).to.equal(false);
    expect((await store.authenticate('Bearer Correct-Horse-8')).ok).to.equal(false);
    expect(hashes).to.equal(2);
  });

  it('authenticates every key `--hash-key` accepts (spaces included) and refuses what it refuses', async () => {
    const dir = tmp();
    const file = path.join(dir, 'keys.yaml');
    const phrase = 'correct horse battery staple';
    fs.writeFileSync(file, `keys:\n  - id: s\n    tenant: t\n    hash: "${await hashKeyScrypt(phrase)}"\n`);
    const store = new ApiKeyStore(file);
    expect(await store.authenticate(`Bearer ${phrase}`)).to.deep.include({ ok: true });
    expect(keyProblem(phrase)).to.equal(null);
    expect(keyProblem('pässwort')).to.match(/printable ASCII/);
    expect(keyProblem(' padded ')).to.match(/begin or end with a space/);
    expect(keyProblem('x'.repeat(513))).to.match(/longer than 512/);
    expect(await store.authenticate('Bearer pässwort')).to.deep.equal({ ok: false, reason: 'malformed' });
  });

  it('limits scrypt verifications per peer before hashing (sha256 keys are never limited)', async () => {
    const dir = tmp();
    const file = path.join(dir, 'keys.yaml');
    fs.writeFileSync(
      file,
      `keys:\n  - id: h\n    tenant: t\n    hash: ${hashKeySha256('tg_fast')}\n` +
        `  - id: s\n    tenant: t\n    hash: "${await hashKeyScrypt('slow phrase')}"\n`,
    );
    let hashes = 0;
    const store = new ApiKeyStore(file, {
      onScrypt: () => (hashes += 1),
      scryptPerPeer: { perSecond: 0.001, burst: 2 },
    });
    expect((await store.authenticate('Bearer nope-1', 'ipv4:10.0.0.1')).ok).to.equal(false);
    expect((await store.authenticate('Bearer nope-2', 'ipv4:10.0.0.1')).ok).to.equal(false);
    expect(await store.authenticate('Bearer nope-3', 'ipv4:10.0.0.1')).to.deep.include({
      reason: 'throttled',
    });
    expect(hashes).to.equal(2);
    expect((await store.authenticate('Bearer tg_fast', 'ipv4:10.0.0.1')).ok).to.equal(true);
    expect((await store.authenticate('Bearer nope-3', 'ipv4:10.0.0.2')).ok).to.equal(false);
    expect(hashes).to.equal(3);
    expect(peerAddress('ipv4:10.0.0.7:51234')).to.equal('ipv4:10.0.0.7');
    expect(peerAddress('ipv6:[::1]:443')).to.equal('ipv6:[::1]');
  });
});

describe('api/rate-limit', () => {
  it('allows a burst, then one request per 1/rate seconds, per key', () => {
    let now = 0;
    const rl = new RateLimiter({ perSecond: 2, burst: 3 }, () => now);
    expect([rl.take('k'), rl.take('k'), rl.take('k')]).to.deep.equal([0, 0, 0]);
    expect(rl.take('k')).to.equal(500);
    expect(rl.take('other')).to.equal(0);
    now = 499;
    expect(rl.take('k')).to.be.greaterThan(0);
    now = 1000;
    expect(rl.take('k')).to.equal(0);
    expect(rl.take('k', { perSecond: 100, burst: 1 })).to.equal(0); // per-key override
  });
});

describe('api/store', () => {
  const newJob = (requestId: string, tenant = 't') => ({
    tenant,
    requestId,
    requestHash: `h-${requestId}`,
    displayName: 'n',
    roundsTotal: 3,
    accountant: 'rdp',
    delta: 1e-5,
    spec: { rounds: 3 },
    backend: 'b',
  });

  it('is idempotent by (tenant, request id) and numbers events 1, 2, 3 with state transitions checked', () => {
    let now = 1000;
    const s = new JobStore(':memory:', () => now++);
    const a = s.createJob(newJob('r1'));
    expect(a.created).to.equal(true);
    expect(s.createJob(newJob('r1'))).to.include({ created: false, conflict: false });
    expect(s.createJob({ ...newJob('r1'), requestHash: 'other' }).conflict).to.equal(true);
    expect(s.createJob(newJob('r1', 'u')).created).to.equal(true);
    const id = a.record.jobId;
    s.append(id, [{ type: 'state_changed', state: 'RUNNING', previousState: null, message: '' }]);
    s.append(
      id,
      [
        {
          type: 'round_progress',
          round: 1,
          roundsTotal: 3,
          privacySpent: { epsilon: 0.1, delta: 1e-5, accountant: 'rdp' },
        },
      ],
      {
        roundsCompleted: 1,
        epsilon: 0.1,
        logCursor: 9,
      },
    );
    expect(() =>
      s.append(id, [{ type: 'state_changed', state: 'QUEUED', previousState: null, message: '' }]),
    ).to.throw('illegal state transition RUNNING -> QUEUED (current state RUNNING)');
    s.append(id, [{ type: 'state_changed', state: 'SUCCEEDED', previousState: null, message: 'done' }]);
    expect(s.append(id, [{ type: 'eval_metrics', round: 1, accuracy: 1, loss: null }])).to.deep.equal([]);
    const events = s.eventsAfter(id, 0, 100);
    expect(events.map((e) => [e.eventId, e.type])).to.deep.equal([
      [1, 'state_changed'],
      [2, 'state_changed'],
      [3, 'round_progress'],
      [4, 'state_changed'],
    ]);
    const r = s.get(id)!;
    expect(r).to.include({
      state: 'SUCCEEDED',
      lastEventId: 4,
      logCursor: 9,
      roundsCompleted: 1,
      message: 'done',
    });
    expect(r.endTimeMs).to.be.a('number');
    expect(s.eventsAfter(id, 2, 1).map((e) => e.eventId)).to.deep.equal([3]);
    s.close();
  });

  it('pages newest first and refuses a second process on the same file', () => {
    const file = path.join(tmp(), 'jobs.db');
    let now = 0;
    const s = new JobStore(file, () => (now += 10));
    for (let i = 0; i < 7; i++) s.createJob(newJob(`r${i}`));
    const pages: string[][] = [];
    let cursor = null;
    for (;;) {
      const p = s.list('t', { states: [], createTimeFromMs: null, createTimeToMs: null }, 3, cursor);
      pages.push(p.jobs.map((j) => j.requestId));
      if (!p.more) break;
      const last = p.jobs.at(-1)!;
      cursor = { createTimeMs: last.createTimeMs, jobId: last.jobId };
    }
    expect(pages).to.deep.equal([['r6', 'r5', 'r4'], ['r3', 'r2', 'r1'], ['r0']]);
    expect(() => new JobStore(file)).to.throw(StoreLockedError);
    s.close();
    new JobStore(file).close();
  });
});

describe('api/privacy-report canonicalJson', () => {
  it('sorts keys at every level and writes non-finite numbers as strings, never null', () => {
    expect(canonicalJson({ b: 1, a: [{ d: 2, c: 'x' }], e: undefined })).to.equal(
      '{"a":[{"c":"x","d":2}],"b":1}',
    );
    expect(canonicalJson({ x: Infinity, y: -Infinity, z: NaN })).to.equal(
      '{"x":"Infinity","y":"-Infinity","z":"NaN"}',
    );
  });
});
