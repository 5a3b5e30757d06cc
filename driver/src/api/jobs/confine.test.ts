// Unit tests of the per-tenant path confinement of API job documents (confine.ts).
import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { confineJobPaths, jobStateDir, realpathExisting, specForBackend } from './confine.js';

describe('api/confine: job document paths stay in the tenant roots', () => {
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'tg-confine-')));
  const roots = { dataRoot: path.join(dir, 'data'), stateRoot: path.join(dir, 'state') };
  before(() => {
    fs.mkdirSync(path.join(roots.dataRoot, 'alice', 'sub'), { recursive: true });
    fs.mkdirSync(path.join(roots.dataRoot, 'bob'), { recursive: true });
    fs.mkdirSync(path.join(roots.dataRoot, 'alice-evil'), { recursive: true });
    fs.writeFileSync(path.join(roots.dataRoot, 'alice', 'train.csv'), 'label,x\n');
    fs.writeFileSync(path.join(roots.dataRoot, 'bob', 'secret.csv'), 'label,x\n');
    fs.symlinkSync('/etc', path.join(roots.dataRoot, 'alice', 'etc-link'));
    fs.symlinkSync(path.join(roots.dataRoot, 'bob'), path.join(roots.dataRoot, 'alice', 'bob-link'));
    fs.symlinkSync(path.join(roots.dataRoot, 'alice', 'sub'), path.join(roots.dataRoot, 'alice', 'ok-link'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const doc = (dataset: Record<string, unknown>, rest: Record<string, unknown> = {}) => ({
    name: 'x',
    dataset: { format: 'csv', ...dataset },
    model: { kind: 'mlp' },
    evaluation: { everyRounds: 1 },
    checkpoint: { everyRounds: 10 },
    ...rest,
  });

  const refused: [string, Record<string, unknown>, string][] = [
    ['an absolute host path', doc({ path: '/etc/passwd' }), 'dataset.path'],
    ['../ out of the root', doc({ path: '../bob/secret.csv' }), 'dataset.path'],
    ['../ hidden in the middle', doc({ path: 'sub/../../bob/secret.csv' }), 'dataset.path'],
    ['a sibling sharing the prefix', doc({ path: '../alice-evil/x.csv' }), 'dataset.path'],
    ['a symlink pointing out', doc({ path: 'etc-link/passwd' }), 'dataset.path'],
    ["a symlink to another tenant's root", doc({ path: 'bob-link/secret.csv' }), 'dataset.path'],
    ['testPath outside', doc({ path: 'train.csv', testPath: '/etc/hosts' }), 'dataset.testPath'],
    [
      'evaluation.testPath outside',
      doc({ path: 'train.csv' }, { evaluation: { everyRounds: 1, testPath: '../bob/secret.csv' } }),
      'evaluation.testPath',
    ],
    [
      "another tenant's base checkpoint",
      doc(
        { path: 'train.csv' },
        { model: { kind: 'mlp', baseCheckpoint: path.join(dir, 'state/bob/jobs/j/m.st') } },
      ),
      'model.baseCheckpoint',
    ],
    [
      'an hf-bert model folder outside',
      doc({ path: 'train.csv' }, { model: { kind: 'hf-bert', path: '../bob/my-bert' } }),
      'model.path',
    ],
    [
      "another tenant's adapter as the starting adapter",
      doc(
        { path: 'train.csv' },
        { model: { kind: 'hf-bert', path: 'sub', initAdapter: 'bob-link/adapter' } },
      ),
      'model.initAdapter',
    ],
    [
      'any checkpoint.dir',
      doc(
        { path: 'train.csv' },
        { checkpoint: { everyRounds: 1, dir: path.join(dir, 'state/alice/jobs/x') } },
      ),
      'checkpoint.dir',
    ],
    [
      '/root as checkpoint.dir',
      doc({ path: 'train.csv' }, { checkpoint: { everyRounds: 1, dir: '/root/x' } }),
      'checkpoint.dir',
    ],
  ];
  for (const [what, spec, field] of refused) {
    it(`refuses ${what}, naming ${field} and no host path`, () => {
      const r = confineJobPaths(spec, 'alice', roots);
      expect(r.ok).to.equal(false);
      if (r.ok) return;
      expect(r.issues.map((i) => i.path)).to.deep.equal([field]);
      for (const i of r.issues) expect(i.message).not.to.include('/');
    });
  }

  it('resolves relative paths against the tenant data root, and symlinks that stay inside', () => {
    const r = confineJobPaths(doc({ path: 'train.csv', testPath: 'ok-link/new.csv' }), 'alice', roots);
    expect(r.ok).to.equal(true);
    if (!r.ok) return;
    const ds = r.spec.dataset as Record<string, string>;
    // Relative to the tenant's root in the stored document (no host path in GetJob)…
    expect(ds.path).to.equal('train.csv');
    expect(ds.testPath).to.equal(path.join('sub', 'new.csv'));
    // …absolute for the backend.
    const run = specForBackend(r.spec, 'alice', 'job-a', roots).dataset as Record<string, string>;
    expect(run.path).to.equal(path.join(roots.dataRoot, 'alice', 'train.csv'));
    expect(run.testPath).to.equal(path.join(roots.dataRoot, 'alice', 'sub', 'new.csv'));
  });

  it('accepts an absolute path inside the root and leaves a preset document alone', () => {
    const abs = path.join(roots.dataRoot, 'alice', 'train.csv');
    expect(confineJobPaths(doc({ path: abs }), 'alice', roots).ok).to.equal(true);
    expect(confineJobPaths(doc({ preset: 'fashion-mnist' }), 'alice', roots).ok).to.equal(true);
  });

  it('refuses every path for a tenant named . or ..', () => {
    const r = confineJobPaths(doc({ path: 'alice/train.csv' }), '..', roots);
    expect(r.ok).to.equal(false);
  });

  it("places checkpoints in the job's own directory under the state root", () => {
    const s = specForBackend(doc({ path: 'x' }), 'alice', 'job-a', roots);
    expect((s.checkpoint as Record<string, unknown>).dir).to.equal(
      path.join(jobStateDir(roots, 'alice', 'job-a'), 'checkpoints'),
    );
    expect((s.checkpoint as Record<string, unknown>).everyRounds).to.equal(10);
  });

  it('realpathExisting resolves the existing prefix and keeps the missing rest', () => {
    expect(realpathExisting(path.join(roots.dataRoot, 'alice', 'ok-link', 'a', 'b'))).to.equal(
      path.join(roots.dataRoot, 'alice', 'sub', 'a', 'b'),
    );
  });
});
