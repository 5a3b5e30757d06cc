// GetJobArtifact's domain side without a server: TrainingService.artifact over real files in a
// job's state directory (what a checkpoint, adapter, report and metrics look like on disk),
// tenancy, job state, symlinks out of the job's directory, the size limit, and a file changed
// while it is sent.
import { expect } from 'chai';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { OpenedArtifact } from './artifacts.js';
import type { JobBackend } from '../backends/backend.js';
import { jobStateDir } from './confine.js';
import type { ArtifactPart } from './domain.js';
import type { ApiError } from '../edge/errors.js';
import type { JobMonitor } from './monitor.js';
import { loadOrCreateSigningKey } from './privacy-report.js';
import { TrainingService, type ServiceOptions } from '../edge/service.js';
import { driverSpecValidator } from './spec.js';
import { JobStore } from './store.js';

const doc = () => ({
  name: 't',
  rounds: 2,
  model: { kind: 'mlp', hidden: [4] },
  dataset: { format: 'idx', preset: 'fashion-mnist' },
  workers: { count: 2 },
  privacy: { clipNorm: 1, noiseMultiplier: 1.1, delta: 1e-5, samplingRate: 0.01, epsilonBudget: null },
  secureAggregation: { mode: 'masking', threshold: 2 },
  optimizer: { kind: 'sgd', learningRate: 0.1 },
});

const sha = (b: Uint8Array) => crypto.createHash('sha256').update(b).digest('hex');

async function collect(a: OpenedArtifact, chunkBytes?: number): Promise<ArtifactPart[]> {
  const out: ArtifactPart[] = [];
  try {
    for await (const p of a.parts(new AbortController().signal, chunkBytes)) out.push(p);
  } finally {
    await a.close();
  }
  return out;
}

async function refusal(p: Promise<unknown>): Promise<ApiError> {
  try {
    await p;
  } catch (err) {
    return err as ApiError;
  }
  throw new Error('expected a refusal');
}

describe('api/artifacts: TrainingService.artifact', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-artifacts-'));
  const roots = { dataRoot: path.join(dir, 'data'), stateRoot: path.join(dir, 'state') };
  const store = new JobStore(':memory:');
  const backend = {
    name: 'stub',
    submit: async ({ jobId }: { jobId: string }) => ({ backendJobId: jobId, data: {} }),
  } as unknown as JobBackend;
  const options = (over: Partial<ServiceOptions> = {}): ServiceOptions => ({
    store,
    backend,
    monitor: { follow: () => undefined } as unknown as JobMonitor,
    validateSpec: driverSpecValidator,
    signingKey: loadOrCreateSigningKey(path.join(dir, 'key.pem')).key,
    planEpsilon: async () => 1,
    roots,
    ...over,
  });
  const service = new TrainingService(options());
  const ctx = (tenant: string) => ({ tenant, signal: new AbortController().signal });
  let n = 0;
  /** A job of `tenant`, ended SUCCEEDED unless `running`; returns its id and checkpoint folder. */
  const job = async (tenant = 'alice', opts: { running?: boolean } = {}) => {
    const { job } = await service.submit(ctx(tenant), {
      requestId: `r-${++n}`,
      spec: { document: doc() },
      validateOnly: false,
    });
    const id = job!.jobId;
    if (!opts.running)
      store.append(id, [{ type: 'state_changed', state: 'SUCCEEDED', previousState: null, message: '' }]);
    const ck = path.join(jobStateDir(roots, tenant, id), 'checkpoints');
    fs.mkdirSync(ck, { recursive: true });
    return { id, ck };
  };
  const model = crypto.randomBytes(3500);
  const checkpointAt = (ck: string) => {
    for (const [round, bytes] of [
      ['round-000001', crypto.randomBytes(10)],
      ['round-000002', model],
    ] as const) {
      fs.mkdirSync(path.join(ck, round), { recursive: true });
      fs.writeFileSync(path.join(ck, round, 'model.safetensors'), bytes);
      fs.writeFileSync(path.join(ck, round, 'optimizer.safetensors'), 'not sent');
    }
    fs.writeFileSync(path.join(ck, 'LATEST'), 'round-000002\n');
  };
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('streams the model of the checkpoint LATEST names: header with size and SHA-256, then chunks', async () => {
    const { id, ck } = await job();
    checkpointAt(ck);
    const a = await service.artifact(ctx('alice'), id, 'CHECKPOINT');
    expect(a.files).to.deep.equal([
      {
        name: 'model.safetensors',
        sizeBytes: 3500,
        sha256: sha(model),
        mediaType: 'application/octet-stream',
      },
    ]);
    const parts = await collect(a, 1000);
    expect(parts[0]).to.deep.equal({ type: 'file', file: a.files[0] });
    const chunks = parts.slice(1).map((p) => (p.type === 'chunk' ? p.data : new Uint8Array()));
    expect(chunks.map((c) => c.byteLength)).to.deep.equal([1000, 1000, 1000, 500]);
    expect(Buffer.concat(chunks).equals(model)).to.equal(true);
  });

  it('streams the metrics and the privacy report by kind', async () => {
    const { id, ck } = await job();
    const files = {
      METRICS: ['metrics.jsonl', '{"round":1}\n{"round":2}\n', 'application/x-ndjson'],
      PRIVACY_REPORT: ['privacy-report.json', '{"epsilon":1.5}\n', 'application/json'],
    } as const;
    for (const [kind, [name, text, mediaType]] of Object.entries(files)) {
      fs.writeFileSync(path.join(ck, name), text);
      const a = await service.artifact(ctx('alice'), id, kind as keyof typeof files);
      const parts = await collect(a);
      expect(parts).to.have.length(2);
      expect(parts[0]).to.deep.include({ type: 'file' });
      expect(a.files[0]).to.deep.include({ name, mediaType, sizeBytes: Buffer.byteLength(text) });
      expect(Buffer.from((parts[1] as { data: Uint8Array }).data).toString()).to.equal(text);
    }
  });

  it("renders the report from the job's metrics with the document GetJob shows, naming no host path", async () => {
    const { id, ck } = await job();
    checkpointAt(ck);
    const rounds = [1, 2].map((round) => ({
      round,
      rounds_total: 2,
      epsilon: 0.5 * round,
      eval_accuracy: round === 2 ? 0.75 : null,
      eval_loss: round === 2 ? 0.6 : null,
    }));
    fs.writeFileSync(path.join(ck, 'metrics.jsonl'), rounds.map((r) => JSON.stringify(r)).join('\n') + '\n');
    fs.writeFileSync(path.join(ck, 'privacy-report.json'), JSON.stringify({ job: 't', epsilon: 1 }));
    // What the cluster ran: absolute host paths, which the tenant is not shown.
    fs.writeFileSync(path.join(ck, 'job-spec.json'), JSON.stringify({ name: 't', checkpoint: { dir: ck } }));
    fs.writeFileSync(path.join(ck, 'report.html'), `<html>${ck}</html>`);
    const a = await service.artifact(ctx('alice'), id, 'REPORT');
    expect(a.files.map((f) => [f.name, f.mediaType])).to.deep.equal([['report.html', 'text/html']]);
    const parts = await collect(a, 4096);
    const html = Buffer.concat(parts.slice(1).map((p) => (p as { data: Uint8Array }).data));
    expect(html.length).to.equal(a.files[0]!.sizeBytes);
    expect(sha(html)).to.equal(a.files[0]!.sha256);
    expect(parts.slice(1).every((p) => (p as { data: Uint8Array }).data.byteLength <= 4096)).to.equal(true);
    const text = html.toString('utf8');
    expect(text).to.match(/^<!doctype html>/);
    expect(text).to.include(`${id}/checkpoints/round-000002`);
    expect(text).to.include('fashion-mnist'); // the stored document, not job-spec.json
    expect(text).to.not.include(dir);
    // A link out of the job's folder among the report's inputs is refused.
    fs.rmSync(path.join(ck, 'job-spec.json'));
    fs.symlinkSync(path.join(dir, 'key.pem'), path.join(ck, 'job-spec.json'));
    expect((await refusal(service.artifact(ctx('alice'), id, 'REPORT'))).message).to.equal(
      `job ${id}'s report (report.html) cannot be sent: job-spec.json links outside the job's directory`,
    );
  });

  it('streams every file of a PEFT adapter folder, sorted, without temporaries or sub-folders', async () => {
    const { id, ck } = await job();
    const ad = path.join(ck, 'adapter');
    fs.mkdirSync(path.join(ad, 'nested'), { recursive: true });
    fs.writeFileSync(path.join(ad, 'adapter_model.safetensors'), crypto.randomBytes(64));
    fs.writeFileSync(path.join(ad, 'adapter_config.json'), '{"peft_type":"LORA"}');
    fs.writeFileSync(path.join(ad, 'head.safetensors'), crypto.randomBytes(16));
    fs.writeFileSync(path.join(ad, '.adapter_model.safetensors.tmp'), 'partial');
    fs.writeFileSync(path.join(ad, 'nested', 'x'), 'x');
    const a = await service.artifact(ctx('alice'), id, 'ADAPTER');
    expect(a.files.map((f) => [f.name, f.mediaType])).to.deep.equal([
      ['adapter_config.json', 'application/json'],
      ['adapter_model.safetensors', 'application/octet-stream'],
      ['head.safetensors', 'application/octet-stream'],
    ]);
    const parts = await collect(a);
    expect(parts.map((p) => p.type)).to.deep.equal(['file', 'chunk', 'file', 'chunk', 'file', 'chunk']);
  });

  it("answers another tenant's job exactly like a job that does not exist", async () => {
    const { id, ck } = await job('alice');
    checkpointAt(ck);
    const other = await refusal(service.artifact(ctx('bob'), id, 'CHECKPOINT'));
    const missing = await refusal(service.artifact(ctx('bob'), 'job-' + 'a'.repeat(26), 'CHECKPOINT'));
    expect(other.code).to.equal('NOT_FOUND');
    expect(other.message).to.equal(`job ${id} not found`);
    expect(missing.message).to.equal(`job job-${'a'.repeat(26)} not found`);
    const bad = await refusal(service.artifact(ctx('bob'), '../alice', 'CHECKPOINT'));
    expect(bad.code).to.equal('INVALID_ARGUMENT');
  });

  it('refuses a job that has not ended (FAILED_PRECONDITION naming its state)', async () => {
    const { id, ck } = await job('alice', { running: true });
    checkpointAt(ck);
    const e = await refusal(service.artifact(ctx('alice'), id, 'CHECKPOINT'));
    expect(e.code).to.equal('FAILED_PRECONDITION');
    expect(e.message).to.equal(
      `job ${id} is QUEUED: its artifacts can be fetched once it has ended (WatchJob says when)`,
    );
  });

  it('says NOT_FOUND naming what is missing: no adapter for an mlp, no checkpoint, no metrics', async () => {
    const { id, ck } = await job();
    const adapter = await refusal(service.artifact(ctx('alice'), id, 'ADAPTER'));
    expect(adapter.code).to.equal('NOT_FOUND');
    expect(adapter.message).to.equal(
      `job ${id} has no adapter: its model (model.kind "mlp") trains no LoRA adapter; ask for the checkpoint (ARTIFACT_KIND_CHECKPOINT)`,
    );
    const cp = await refusal(service.artifact(ctx('alice'), id, 'CHECKPOINT'));
    expect(cp.code).to.equal('NOT_FOUND');
    expect(cp.message).to.equal(`job ${id} has no checkpoint: it ended (SUCCEEDED) without writing one`);
    const m = await refusal(service.artifact(ctx('alice'), id, 'METRICS'));
    expect(m.message).to.equal(
      `job ${id} has no metrics (metrics.jsonl): it ended (SUCCEEDED) without writing one`,
    );
    fs.rmSync(ck, { recursive: true });
    fs.writeFileSync(path.join(ck, '..', 'stray'), '');
    expect((await refusal(service.artifact(ctx('alice'), id, 'REPORT'))).code).to.equal('NOT_FOUND');
  });

  it("never opens a file a link takes out of the job's directory, and names no host path", async () => {
    const { id, ck } = await job();
    const secret = path.join(dir, 'secret.txt');
    fs.writeFileSync(secret, 'not yours');
    fs.symlinkSync(secret, path.join(ck, 'metrics.jsonl'));
    const e = await refusal(service.artifact(ctx('alice'), id, 'METRICS'));
    expect(e.code).to.equal('FAILED_PRECONDITION');
    expect(e.message).to.equal(
      `job ${id}'s metrics (metrics.jsonl) cannot be sent: metrics.jsonl links outside the job's directory`,
    );
    expect(e.message).to.not.include(dir);
    // A link out from the adapter folder itself, and a round folder that links out.
    fs.symlinkSync(dir, path.join(ck, 'adapter'));
    expect((await refusal(service.artifact(ctx('alice'), id, 'ADAPTER'))).message).to.include(
      "adapter links outside the job's directory",
    );
    fs.mkdirSync(path.join(dir, 'round-000009'));
    fs.writeFileSync(path.join(dir, 'round-000009', 'model.safetensors'), 'not yours');
    fs.symlinkSync(path.join(dir, 'round-000009'), path.join(ck, 'round-000009'));
    fs.writeFileSync(path.join(ck, 'LATEST'), 'round-000009\n');
    expect((await refusal(service.artifact(ctx('alice'), id, 'CHECKPOINT'))).message).to.include(
      "model.safetensors links outside the job's directory",
    );
    // A link that stays inside the job's directory is followed.
    fs.rmSync(path.join(ck, 'metrics.jsonl'));
    fs.writeFileSync(path.join(ck, 'metrics-v1.jsonl'), '{"round":1}\n');
    fs.symlinkSync('metrics-v1.jsonl', path.join(ck, 'metrics.jsonl'));
    const a = await service.artifact(ctx('alice'), id, 'METRICS');
    expect(a.files[0]!.name).to.equal('metrics.jsonl');
    await a.close();
  });

  it('refuses a LATEST pointer that names no checkpoint folder', async () => {
    const { id, ck } = await job();
    fs.writeFileSync(path.join(ck, 'LATEST'), '../../../../etc\n');
    const e = await refusal(service.artifact(ctx('alice'), id, 'CHECKPOINT'));
    expect(e.code).to.equal('FAILED_PRECONDITION');
    expect(e.message).to.equal(
      `job ${id}'s checkpoint cannot be sent: its LATEST pointer does not name a checkpoint`,
    );
  });

  it('refuses an artifact above the size limit with RESOURCE_EXHAUSTED naming both sizes', async () => {
    const { id, ck } = await job();
    checkpointAt(ck);
    const small = new TrainingService(options({ maxArtifactBytes: 3499 }));
    const e = await refusal(small.artifact(ctx('alice'), id, 'CHECKPOINT'));
    expect(e.code).to.equal('RESOURCE_EXHAUSTED');
    expect(e.message).to.equal(
      `job ${id}'s checkpoint is 3500 bytes, above this server's limit of 3499 bytes per artifact; ` +
        'ask the operator to raise serve --max-artifact-bytes',
    );
    const exact = await new TrainingService(options({ maxArtifactBytes: 3500 })).artifact(
      ctx('alice'),
      id,
      'CHECKPOINT',
    );
    await exact.close();
  });

  it('fails the stream (ABORTED) when a file changes in place while it is sent', async () => {
    const { id, ck } = await job();
    checkpointAt(ck);
    const a = await service.artifact(ctx('alice'), id, 'CHECKPOINT');
    const file = path.join(ck, 'round-000002', 'model.safetensors');
    fs.writeFileSync(file, crypto.randomBytes(3500), { flag: 'r+' });
    const e = await refusal(collect(a));
    expect(e.code).to.equal('ABORTED');
    expect(e.message).to.equal(
      `job ${id}'s model.safetensors changed while it was being sent; download it again`,
    );
  });

  it('keeps sending what it opened when the file is replaced atomically (write + rename)', async () => {
    const { id, ck } = await job();
    checkpointAt(ck);
    const a = await service.artifact(ctx('alice'), id, 'CHECKPOINT');
    const file = path.join(ck, 'round-000002', 'model.safetensors');
    fs.writeFileSync(file + '.new', crypto.randomBytes(100));
    fs.renameSync(file + '.new', file);
    const parts = await collect(a);
    const data = Buffer.concat(parts.slice(1).map((p) => (p as { data: Uint8Array }).data));
    expect(data.equals(model)).to.equal(true);
  });

  it('sends nothing from a server without a state root', async () => {
    const { id } = await job();
    const o = options();
    delete o.roots;
    const unconfined = new TrainingService(o);
    const e = await refusal(unconfined.artifact(ctx('alice'), id, 'METRICS'));
    expect(e.code).to.equal('FAILED_PRECONDITION');
    expect(e.message).to.include('runs without a state root');
  });
});
