// The job spec resolves to the run config of worker-ts/src/run-config/schema.ts, the one schema
// the driver, the Node programs and the Ray side (via its JSON schema) read.
import { parseRunConfig } from '@tensorguard/worker';
import { runConfigSchema } from '@tensorguard/worker/run-config';
import { expect } from 'chai';
import { jobSpecSchema } from './schema.js';
import { JobSpecError, parseJobSpec, resolveRunConfig, validateJobSpec } from './index.js';
import { validSpecInput } from './testing.js';

const resolve = (doc: unknown) => resolveRunConfig(parseJobSpec(doc), { jobId: 'j-1', dataDir: '/data' });

describe('job spec → run config', () => {
  it('resolves to a run config the run config schema leaves unchanged (every default already filled)', async () => {
    const cfg = await resolve(validSpecInput());
    expect(runConfigSchema.parse(cfg)).to.deep.equal(cfg);
    const { secureAggregation, ...rest } = parseRunConfig(JSON.parse(JSON.stringify(cfg)));
    expect({ ...rest, secureAggregation: { ...secureAggregation, threshold: undefined } }).to.deep.equal({
      ...cfg,
      secureAggregation: { ...cfg.secureAggregation, threshold: undefined },
    });
    expect(cfg.secureAggregation).to.deep.equal({ mode: 'masking', bits: 'auto', quorum: 2, scale: 2 ** 16 });
    expect(cfg.workers).to.deep.equal({
      count: 3,
      cpusPerWorker: 0.5,
      lanes: 1,
      gpusPerWorker: 0,
      placementStrategy: 'PACK',
      maxRestarts: 3,
    });
  });

  it('takes its defaults from the run config schema (stated once)', () => {
    const spec = jobSpecSchema.parse(validSpecInput());
    const cfg = runConfigSchema.parse({
      ...validSpecInput(),
      secureAggregation: { quorum: 2 },
      checkpoint: { dir: '/x' },
    });
    expect(spec.workers).to.deep.equal(cfg.workers);
    expect(spec.envelope).to.deep.equal(cfg.envelope);
    expect(spec.model).to.deep.equal(cfg.model);
    expect(spec.coordinator).to.deep.equal(cfg.coordinator);
    expect(spec.evaluation.everyRounds).to.equal(cfg.evaluation.everyRounds);
    expect(spec.checkpoint.everyRounds).to.equal(cfg.checkpoint.everyRounds);
    expect(spec.roundTimeoutMs).to.equal(cfg.roundTimeoutMs);
    expect(spec.privacy.delta).to.equal(cfg.privacy.delta);
  });

  it("reads secureAggregation.threshold, the quorum's old name, and refuses both", async () => {
    const doc = { ...validSpecInput(), secureAggregation: { threshold: 3 } };
    expect((await resolve(doc)).secureAggregation.quorum).to.equal(3);
    const both = validateJobSpec({ ...validSpecInput(), secureAggregation: { quorum: 2, threshold: 2 } });
    expect(both.ok).to.equal(false);
    expect(!both.ok && both.issues).to.deep.include({
      path: 'secureAggregation.threshold',
      message:
        'is the old name of secureAggregation.quorum (the fewest contributors per round): give only quorum',
    });
    // An issue names the field the spec wrote.
    expect(() => parseJobSpec({ ...validSpecInput(), secureAggregation: { quorum: 5 } })).to.throw(
      JobSpecError,
      'secureAggregation.quorum: 5 exceeds workers.count 3',
    );
  });

  it("moves evaluation.testPath to the run config's dataset.testPath and resolves 'lora'", async () => {
    const cfg = await resolve({
      ...validSpecInput(),
      model: { kind: 'transformer-lora' },
      evaluation: { everyRounds: 2, testPath: '/held-out' },
    });
    expect(cfg.dataset.testPath).to.equal('/held-out');
    expect(cfg.evaluation).to.deep.equal({ everyRounds: 2 });
    expect(cfg.model).to.include({ kind: 'transformer-lora' });
    expect((cfg.model as { trainable: string[] }).trainable).to.deep.equal(['lora', 'head']);
  });
});
