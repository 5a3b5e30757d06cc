// `tensorguard serve` option parsing that needs no server: --max-artifact-bytes.
import { expect } from 'chai';
import { DEFAULT_MAX_ARTIFACT_BYTES } from '../api/jobs/artifacts.js';
import { parseServeArgs } from './serve.js';
import { UsageError } from './types.js';

const base = ['--listen', '127.0.0.1:0', '--api-keys', 'keys.yaml'];

describe('tensorguard serve --max-artifact-bytes', () => {
  it('defaults to 2 GiB and takes a positive integer of bytes', () => {
    expect(parseServeArgs(base, '/w').maxArtifactBytes).to.equal(DEFAULT_MAX_ARTIFACT_BYTES);
    expect(DEFAULT_MAX_ARTIFACT_BYTES).to.equal(2 * 1024 ** 3);
    expect(parseServeArgs([...base, '--max-artifact-bytes', '5000000000'], '/w').maxArtifactBytes).to.equal(
      5_000_000_000,
    );
  });

  it('refuses zero, fractions and words, naming the flag', () => {
    for (const v of ['0', '1.5', '2GiB', '-1']) {
      expect(() => parseServeArgs([...base, '--max-artifact-bytes', v], '/w'), v)
        .to.throw(UsageError)
        .with.property('message')
        .that.matches(/^--max-artifact-bytes (must be a positive integer, got|needs a value)/);
    }
  });
});
