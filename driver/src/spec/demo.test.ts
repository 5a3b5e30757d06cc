// The demo's built-in spec is valid, and docs/job-spec.md shows it as it is.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import YAML from 'yaml';
import { demoSpec, finetuneDemoSpec } from './demo.js';
import { parseJobSpec } from './parse.js';

const docs = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../docs/job-spec.md');

describe('demo spec', () => {
  it('is valid in both sizes: 4 workers, quorum 4, target ε 3 at δ 1e-5, budget 3', () => {
    for (const full of [false, true]) {
      const s = demoSpec(full);
      expect(s.workers.count).to.equal(4);
      expect(s.secureAggregation.quorum).to.equal(4);
      expect(s.privacy).to.include({ targetEpsilon: 3, epsilonBudget: 3, delta: 1e-5 });
      expect(s.model.kind).to.equal('cnn-tanh');
      expect(s.dataset.preset).to.equal('fashion-mnist');
    }
    expect(demoSpec(true).rounds).to.equal(1172);
  });

  it('--finetune: DP-LoRA on all-MiniLM-L6-v2 for Rotten Tomatoes, 2 workers, quorum 2, target ε 8 at δ 1e-5, budget 8', () => {
    const s = finetuneDemoSpec();
    expect(s.model).to.deep.include({ kind: 'hf-bert', preset: 'all-minilm-l6-v2', pooling: 'mean' });
    expect(s.model.kind === 'hf-bert' && s.model.lora).to.deep.equal({
      rank: 8,
      alpha: 8,
      targetModules: ['query', 'value'],
    });
    expect(s.dataset).to.include({ format: 'csv', preset: 'rotten-tomatoes', maxTokens: 32 });
    expect(s.workers.count).to.equal(2);
    expect(s.secureAggregation.quorum).to.equal(2);
    expect(s.privacy).to.include({ targetEpsilon: 8, epsilonBudget: 8, delta: 1e-5 });
  });

  it('matches the YAML in docs/job-spec.md ("The demo\'s spec")', () => {
    const text = fs.readFileSync(docs, 'utf8');
    const section = text.slice(text.indexOf("## The demo's spec"));
    const yaml = /```yaml\n([\s\S]*?)```/.exec(section)![1]!;
    expect(parseJobSpec(YAML.parse(yaml))).to.deep.equal(demoSpec(false));
  });
});
