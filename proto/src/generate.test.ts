import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ModelVersion, Tensor } from './index.js';

const protoDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const script = path.join(protoDir, 'scripts', 'generate.mjs');

describe('proto generation check', function () {
  this.timeout(60_000);

  it('passes when proto/src/gen matches a fresh generation', () => {
    const res = spawnSync(process.execPath, [script, '--check'], { encoding: 'utf8' });
    expect(res.stderr).to.equal('');
    expect(res.status).to.equal(0);
  });

  it('reports a difference when the committed code was edited by hand', async () => {
    const { generate, diffTrees } = (await import(script)) as {
      generate: (out: string) => void;
      diffTrees: (a: string, b: string) => string[];
    };
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-proto-test-'));
    try {
      const fresh = path.join(tmp, 'fresh');
      const edited = path.join(tmp, 'edited');
      generate(fresh);
      fs.cpSync(fresh, edited, { recursive: true });
      expect(diffTrees(edited, fresh)).to.deep.equal([]);
      fs.appendFileSync(path.join(edited, 'tensorguard', 'v1', 'common.ts'), '\n// hand edit\n');
      fs.writeFileSync(path.join(edited, 'stray.ts'), 'export {};\n');
      const diffs = diffTrees(edited, fresh);
      expect(diffs).to.include('differs: tensorguard/v1/common.ts');
      expect(diffs.some((d) => d.includes('stray.ts'))).to.equal(true);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe('tensorguard.v1 common messages', () => {
  it('round-trips ModelVersion and Tensor through the wire format', () => {
    const mv = { round: 42, fingerprint: 'ab'.repeat(32) };
    expect(ModelVersion.decode(ModelVersion.encode(mv).finish())).to.deep.equal(mv);
    const data = Buffer.from(new Float32Array([1, -2.5, 3]).buffer);
    const t = Tensor.decode(Tensor.encode({ name: 'w', shape: [3], data }).finish());
    expect(t.shape).to.deep.equal([3]);
    expect(Buffer.from(t.data).equals(data)).to.equal(true);
  });
});
