// TrainingService's tenancy guards without a server: path confinement, per-tenant limits, and
// no backend text (host paths, file contents) in the client's message.
import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BackendError, type JobBackend } from '../backends/backend.js';
import { type ApiError } from './errors.js';
import type { JobMonitor } from '../jobs/monitor.js';
import { loadOrCreateSigningKey } from '../jobs/privacy-report.js';
import { TrainingService } from './service.js';
import { driverSpecValidator } from '../jobs/spec.js';
import { JobStore } from '../jobs/store.js';

const doc = (over: Record<string, unknown> = {}) => ({
  name: 't',
  rounds: 2,
  model: { kind: 'mlp', hidden: [4] },
  dataset: { format: 'idx', preset: 'fashion-mnist' },
  workers: { count: 2 },
  privacy: { clipNorm: 1, noiseMultiplier: 1.1, delta: 1e-5, samplingRate: 0.01, epsilonBudget: null },
  secureAggregation: { mode: 'masking', threshold: 2 },
  optimizer: { kind: 'sgd', learningRate: 0.1 },
  ...over,
});

describe('api/service: tenancy guards', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-svc-tenancy-'));
  const roots = { dataRoot: path.join(dir, 'data'), stateRoot: path.join(dir, 'state') };
  const submitted: Record<string, unknown>[] = [];
  let fail: BackendError | null = null;
  const backend = {
    name: 'stub',
    submit: async ({ jobId, spec }: { jobId: string; spec: Record<string, unknown> }) => {
      if (fail) throw fail;
      submitted.push(spec);
      return { backendJobId: jobId, data: {} };
    },
  } as unknown as JobBackend;
  const monitor = { follow: () => undefined } as unknown as JobMonitor;
  const service = new TrainingService({
    store: new JobStore(':memory:'),
    backend,
    monitor,
    validateSpec: driverSpecValidator,
    signingKey: loadOrCreateSigningKey(path.join(dir, 'key.pem')).key,
    planEpsilon: async () => 1,
    roots,
    limits: { maxJobsPerTenant: 2, maxWorkersPerTenant: 5 },
  });
  const ctx = (tenant: string) => ({ tenant, signal: new AbortController().signal });
  const submit = (tenant: string, id: string, d = doc()) =>
    service.submit(ctx(tenant), { requestId: id, spec: { document: d }, validateOnly: false });
  const refused = async (p: Promise<unknown>): Promise<ApiError> => {
    try {
      await p;
    } catch (err) {
      return err as ApiError;
    }
    throw new Error('expected a refusal');
  };
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("runs the job with checkpoints in its own directory under the tenant's state root", async () => {
    const { job } = await submit('alice', 'a-1');
    const cp = submitted.at(-1)!.checkpoint as Record<string, unknown>;
    expect(cp.dir).to.equal(path.join(roots.stateRoot, 'alice', 'jobs', job!.jobId, 'checkpoints'));
  });

  it("stores the document's paths relative to the data root and runs them absolute", async () => {
    fs.mkdirSync(path.join(roots.dataRoot, 'dave'), { recursive: true });
    const d = doc({ dataset: { format: 'csv', path: './sub/../train.csv', numClasses: 2 } });
    const { job } = await submit('dave', 'd-1', d);
    expect((job!.spec.dataset as Record<string, unknown>).path).to.equal('train.csv');
    const run = submitted.at(-1)!.dataset as Record<string, unknown>;
    expect(run.path).to.equal(path.join(fs.realpathSync(roots.dataRoot), 'dave', 'train.csv'));
  });

  it('refuses /etc/passwd naming spec.document.dataset.path', async () => {
    const e = await refused(
      submit('alice', 'a-x', doc({ dataset: { format: 'csv', path: '/etc/passwd', numClasses: 2 } })),
    );
    expect(e.code, e.message).to.equal('INVALID_ARGUMENT');
    expect(e.message)
      .to.include('spec.document.dataset.path')
      .and.to.include("must be inside the tenant's data root");
    expect(e.message).not.to.include('/etc');
  });

  it('RESOURCE_EXHAUSTED beyond the jobs and the workers of a tenant; another tenant unaffected', async () => {
    await submit('alice', 'a-2'); // 2 jobs, 4 workers
    expect((await refused(submit('alice', 'a-3'))).code).to.equal('RESOURCE_EXHAUSTED');
    const wide = doc({ workers: { count: 6 }, secureAggregation: { mode: 'masking', threshold: 2 } });
    expect((await refused(submit('bob', 'b-1', wide))).code).to.equal('RESOURCE_EXHAUSTED');
    expect((await submit('bob', 'b-2')).created).to.equal(true);
  });

  it("keeps the backend's text (paths, contents) out of the client's message", async () => {
    fail = new BackendError('cannot read /srv/secret/x.csv: root:x:0:0', false);
    try {
      const e = await refused(submit('carol', 'c-1'));
      expect(e.code).to.equal('FAILED_PRECONDITION');
      expect(e.message).not.to.match(/\/srv|root:x/);
      expect(e.message).to.include('see the server log');
    } finally {
      fail = null;
    }
  });
});
