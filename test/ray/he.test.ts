// An HE job through Ray end to end: the aggregator actor starts its own key holder with the job's
// key-holder certificate (pki.py key_holder), the link between them is mutual TLS, workers encrypt
// only under the key the key holder signed, and the key holder decrypts each round's sum once.
// Build first: `npx tsc -b`.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { cli, jobEnv, readJson, writeSpec, type PrivacyReport } from './harness.js';

describe('ray: an HE job (the aggregator’s key holder over mutual TLS)', function () {
  this.timeout(420_000);
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-ray-he-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('trains 3 rounds with 3 workers, every round decrypted by the key holder and accounted', async () => {
    const run = cli(['train', writeSpec(dir, 'he', { rounds: 3, mode: 'he' }), '--json'], jobEnv());
    const code = await run.done;
    expect(code, `${run.stdout}\n${run.stderr}`).to.equal(0);
    const result = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as {
      status: string;
      rounds: number;
      epsilon: number;
      privacy_report: string;
    };
    expect(result).to.include({ status: 'succeeded', rounds: 3 });
    const report = readJson<PrivacyReport>(result.privacy_report);
    expect(report.releasedRounds.map((r) => r.round)).to.deep.equal([1, 2, 3]);
    expect(result.epsilon).to.equal(report.epsilon);
    // No key material reaches the driver's output (Ray logs are streamed into it).
    expect(`${run.stdout}\n${run.stderr}`).not.to.match(/BEGIN (EC |RSA )?PRIVATE KEY/);
  });
});
