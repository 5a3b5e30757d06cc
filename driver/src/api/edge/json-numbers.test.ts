import { expect } from 'chai';
import { parseMetricLine } from '../backends/backend.js';
import { privacySpentFromProto, privacySpentToProto } from './convert.js';
import { figureOrNull, parseKeepingNonFinite, stringifyKeepingNonFinite } from './json-numbers.js';
import { JobStore } from '../jobs/store.js';
import { trainingService as pb, PrivacySpent } from '@tensorguard/proto';

describe('api: an infinite ε stays infinite through every conversion', () => {
  it('stored JSON writes "Infinity" and reads it back as a number under figure keys only', () => {
    const v = { epsilon: Infinity, delta: 1e-5, message: 'Infinity', shards: [{ epsilon: -Infinity }] };
    const text = stringifyKeepingNonFinite(v);
    expect(text).to.equal(
      '{"epsilon":"Infinity","delta":0.00001,"message":"Infinity","shards":[{"epsilon":"-Infinity"}]}',
    );
    expect(parseKeepingNonFinite(text)).to.deep.equal(v);
    expect(figureOrNull('Infinity')).to.equal(Infinity);
    expect(figureOrNull(null)).to.equal(null);
    expect(figureOrNull('NaN')).to.equal(null);
  });

  it('a metric line with epsilon "Infinity" parses to Infinity', () => {
    const m = parseMetricLine('{"type":"metrics","round":1,"rounds_total":2,"epsilon":"Infinity"}');
    expect(m).to.include({ type: 'metrics', epsilon: Infinity });
    // JSON.stringify({ epsilon: Infinity }) writes null: a round with ε null is not "unchanged".
    expect(parseMetricLine('{"type":"metrics","round":2,"epsilon":null}')).to.include({ epsilon: Infinity });
    expect(parseMetricLine('{"type":"metrics","round":2}')).to.include({ epsilon: null });
    const d = parseMetricLine('{"type":"done","status":"succeeded","epsilon":"Infinity"}');
    expect(d).to.include({ type: 'done', epsilon: Infinity });
  });

  it('the proto double carries +Inf through bytes', () => {
    const wire = PrivacySpent.encode(
      privacySpentToProto({ epsilon: Infinity, delta: 1e-5, accountant: 'rdp' }),
    ).finish();
    expect(privacySpentFromProto(PrivacySpent.decode(wire)).epsilon).to.equal(Infinity);
    const job = pb.Job.decode(
      pb.Job.encode(
        pb.Job.fromPartial({ privacySpent: { epsilon: Infinity, delta: 0, accountant: 'rdp' } }),
      ).finish(),
    );
    expect(job.privacySpent!.epsilon).to.equal(Infinity);
  });

  it('the SQLite store keeps ε = ∞ in the job row and in its events', () => {
    const s = new JobStore(':memory:');
    const { record } = s.createJob({
      tenant: 't',
      requestId: 'r',
      requestHash: 'h',
      displayName: 'n',
      roundsTotal: 1,
      accountant: 'rdp',
      delta: 1e-5,
      spec: {},
      backend: 'test',
    });
    s.append(
      record.jobId,
      [
        {
          type: 'round_progress',
          round: 1,
          roundsTotal: 1,
          privacySpent: { epsilon: Infinity, delta: 1e-5, accountant: 'rdp' },
        },
      ],
      { epsilon: Infinity, privacy: { shards: [{ shard_id: 's0', epsilon: Infinity }] } },
    );
    const got = s.get(record.jobId)!;
    expect(got.privacySpent.epsilon).to.equal(Infinity);
    expect(got.privacy).to.deep.equal({ shards: [{ shard_id: 's0', epsilon: Infinity }] });
    const ev = s.eventsAfter(record.jobId, 0, 10).find((e) => e.type === 'round_progress');
    expect(ev).to.deep.include({ privacySpent: { epsilon: Infinity, delta: 1e-5, accountant: 'rdp' } });
    s.close();
  });
});
