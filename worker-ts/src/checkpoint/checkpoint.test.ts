import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CheckpointError } from './errors.js';
import { decodeSafetensors, encodeSafetensors, tensor } from './safetensors.js';
import {
  latestCheckpointDir,
  loadLatestCheckpoint,
  saveCheckpoint,
  type CheckpointContents,
} from './store.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const PYTHON = path.join(ROOT, '.venv/bin/python');
const FP = 'a'.repeat(64);

function contents(round: number, value: number): CheckpointContents {
  return {
    manifest: {
      round,
      baseModelFingerprint: FP,
      model: { kind: 'mlp', trainable: ['w'], parameters: 6 },
      tensors: [{ name: 'w', shape: [2, 3], dtype: 'F32' }],
      optimizer: { kind: 'sgd', step: round },
      dp: {
        clipNorm: 1,
        noiseMultiplier: 1,
        delta: 1e-5,
        samplingRate: 0.1,
        epsilonBudget: 3,
        accountant: 'rdp',
      },
      accountant: { rounds: [] },
      epsilon: 0.5,
    },
    model: {
      w: tensor(
        Float32Array.from({ length: 6 }, (_, i) => value + i),
        [2, 3],
      ),
    },
    optimizer: { velocity: tensor(new Float32Array(6)) },
  };
}

describe('checkpoint/safetensors', () => {
  it('round-trips tensors and metadata', () => {
    const buf = encodeSafetensors(
      { b: tensor(Int32Array.from([1, -2])), a: tensor(Float64Array.from([0.5]), [1, 1]) },
      { k: 'v' },
    );
    expect(buf.readBigUInt64LE(0) % 8n).to.equal(0n);
    const d = decodeSafetensors(buf, 'f');
    expect(d.metadata).to.deep.equal({ k: 'v' });
    expect(Array.from(d.tensors.b!.data as Int32Array)).to.deep.equal([1, -2]);
    expect(d.tensors.a!.shape).to.deep.equal([1, 1]);
  });
  it('refuses truncated and corrupt files with a clear error', () => {
    const buf = encodeSafetensors({ w: tensor(new Float32Array(10)) });
    expect(() => decodeSafetensors(buf.subarray(0, buf.length - 3), 'm.safetensors')).to.throw(
      CheckpointError,
      "m.safetensors: not a valid safetensors file: tensor 'w' ends at byte 40 but the data section has 37 bytes (truncated?)",
    );
    const bad = Buffer.from(buf);
    bad[9] = 0x7b; // break the JSON
    expect(() => decodeSafetensors(bad, 'm.safetensors')).to.throw(CheckpointError, 'header is not JSON');
  });
  it("loads in Python's safetensors with identical tensors", () => {
    // .venv (with safetensors) is made by scripts/setup.mjs, which npm test runs first.
    expect(fs.existsSync(PYTHON), `${PYTHON} is missing: run npm run setup`).to.equal(true);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-'));
    const w = Float32Array.from({ length: 12 }, (_, i) => Math.fround(Math.sin(i) * 1e3));
    const ids = Int32Array.from([7, -1, 2 ** 30]);
    const file = path.join(dir, 'x.safetensors');
    fs.writeFileSync(
      file,
      encodeSafetensors({ 'layer.0.kernel': tensor(w, [3, 4]), ids: tensor(ids) }, { round: '3' }),
    );
    const script = [
      'import json, sys',
      'from safetensors.numpy import load_file',
      'from safetensors import safe_open',
      't = load_file(sys.argv[1])',
      "meta = safe_open(sys.argv[1], 'np').metadata()",
      "print(json.dumps({k: {'shape': list(v.shape), 'dtype': str(v.dtype), 'values': v.reshape(-1).tolist()} for k, v in t.items()} | {'__meta': meta}))",
    ].join('\n');
    const r = spawnSync(PYTHON, ['-c', script, file], { encoding: 'utf8' });
    expect(r.status, r.stderr).to.equal(0);
    const out = JSON.parse(r.stdout) as Record<string, { shape: number[]; dtype: string; values: number[] }>;
    expect(out['layer.0.kernel']!.shape).to.deep.equal([3, 4]);
    expect(out['layer.0.kernel']!.dtype).to.equal('float32');
    expect(out['layer.0.kernel']!.values).to.deep.equal(Array.from(w));
    expect(out.ids!.dtype).to.equal('int32');
    expect(out.ids!.values).to.deep.equal(Array.from(ids));
    expect(out.__meta).to.deep.equal({ round: '3' });
  });
});

describe('checkpoint/store', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-'));
  });
  const snapshot = (d: string) =>
    Object.fromEntries(
      fs
        .readdirSync(d, { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => {
          const p = path.join(e.parentPath, e.name);
          return [path.relative(d, p), fs.readFileSync(p).toString('base64')];
        }),
    );

  it('saves atomically, loads the latest and keeps two', () => {
    expect(loadLatestCheckpoint(dir, { baseModelFingerprint: FP })).to.equal(null);
    for (let r = 1; r <= 3; r++) saveCheckpoint(dir, contents(r, r));
    const c = loadLatestCheckpoint(dir, { baseModelFingerprint: FP })!;
    expect(c.manifest.round).to.equal(3);
    expect((c.model.w!.data as Float32Array)[0]).to.equal(3);
    expect(
      fs
        .readdirSync(dir)
        .filter((f) => f.startsWith('round-'))
        .sort(),
    ).to.deep.equal(['round-000002', 'round-000003']);
  });
  it('refuses a corrupt checkpoint (and no intact older one) and leaves every file untouched', () => {
    saveCheckpoint(dir, contents(1, 1));
    saveCheckpoint(dir, contents(2, 2));
    for (const r of ['round-000001', 'round-000002']) {
      const f = path.join(dir, r, 'model.safetensors');
      const b = fs.readFileSync(f);
      b[b.length - 1] = b[b.length - 1]! ^ 0xff;
      fs.writeFileSync(f, b);
    }
    const before = snapshot(dir);
    expect(() => loadLatestCheckpoint(dir, { baseModelFingerprint: FP })).to.throw(
      CheckpointError,
      /round-000002\/model\.safetensors: corrupt checkpoint file \(SHA-256 .* does not match/,
    );
    expect(snapshot(dir)).to.deep.equal(before);
  });
  it('refuses a checkpoint of another base model', () => {
    saveCheckpoint(dir, contents(1, 1));
    const before = snapshot(dir);
    expect(() => loadLatestCheckpoint(dir, { baseModelFingerprint: 'b'.repeat(64) })).to.throw(
      CheckpointError,
      'checkpoint was trained from a different base model',
    );
    expect(snapshot(dir)).to.deep.equal(before);
  });
  it('falls back to the previous intact checkpoint when the latest is corrupt, saying so', () => {
    saveCheckpoint(dir, contents(1, 1));
    saveCheckpoint(dir, contents(2, 2));
    const f = path.join(latestCheckpointDir(dir)!, 'model.safetensors');
    const b = fs.readFileSync(f);
    b[b.length - 1] = b[b.length - 1]! ^ 0xff;
    fs.writeFileSync(f, b);
    const notes: string[] = [];
    const c = loadLatestCheckpoint(dir, { baseModelFingerprint: FP }, (m) => notes.push(m))!;
    expect(c.manifest.round).to.equal(1);
    expect(notes).to.have.length(1);
    expect(notes[0]).to.match(/round-000002 is unusable .*previous intact checkpoint .*round-000001/);
  });
  it('writes checkpoints 0600 in 0700 directories and refuses non-finite tensors', () => {
    const sub = path.join(dir, 'ck');
    const d = saveCheckpoint(sub, contents(1, 1));
    expect(fs.statSync(sub).mode & 0o777).to.equal(0o700);
    expect(fs.statSync(d).mode & 0o777).to.equal(0o700);
    for (const f of fs.readdirSync(d)) expect(fs.statSync(path.join(d, f)).mode & 0o777).to.equal(0o600);
    expect(fs.statSync(path.join(sub, 'LATEST')).mode & 0o777).to.equal(0o600);
    const bad = contents(2, 2);
    (bad.model.w!.data as Float32Array)[0] = NaN;
    expect(() => saveCheckpoint(sub, bad)).to.throw(
      CheckpointError,
      "model tensor 'w' has a non-finite value at index 0",
    );
    expect(loadLatestCheckpoint(sub, { baseModelFingerprint: FP })!.manifest.round).to.equal(1);
  });
  it('ignores a half-written temporary directory left by a crash', () => {
    saveCheckpoint(dir, contents(1, 1));
    fs.mkdirSync(path.join(dir, '.tmp-round-000002-1-1'));
    fs.writeFileSync(path.join(dir, '.tmp-round-000002-1-1', 'model.safetensors'), 'partial');
    expect(loadLatestCheckpoint(dir, { baseModelFingerprint: FP })!.manifest.round).to.equal(1);
  });
});
