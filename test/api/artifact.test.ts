// GetJobArtifact end to end: `tensorguard serve` over TLS on a Ray head the test owns runs a real
// short training job (an MLP on a few hundred Fashion-MNIST records, 2 DP workers with secure
// aggregation); `tensorguard status --watch` follows the same job with the live progress line;
// then the finished job's checkpoint is downloaded with the driver's client (SHA-256 checked) and
// loaded with Python's `safetensors`, its metrics, report and privacy report fetched, and the
// tenant scope and the missing adapter (an MLP has none) checked. A LoRA fine-tune of a small
// BERT in the tenant's data root yields a PEFT adapter, downloaded and read by Python. A restarted
// server (local-process backend, same job database) refuses the checkpoint above
// --max-artifact-bytes and carries eval loss. About 2 minutes.
// Alone: `cd test && npx mocha api/artifact.test.ts`.
import * as grpc from '@grpc/grpc-js';
import { trainingService as pb } from '@tensorguard/proto';
import {
  encodeSafetensors,
  hfBert,
  hfName,
  readBertConfig,
  resolveModelPreset,
  tensor,
  transpose2d,
} from '@tensorguard/worker';
import { expect } from 'chai';
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { downloadJobArtifact } from '../../driver/src/api/client/artifact-client.js';
import { LocalHead } from '../../driver/src/ray/index.js';
import {
  bearer,
  call,
  client,
  keyFile,
  root,
  startServer,
  tmpDir,
  watch,
  type ServerProcess,
} from './helpers.js';

const KEY_T = 'tg_artifact_test_key_tenant_t_0123456789';
const KEY_U = 'tg_artifact_test_key_tenant_u_0123456789';
const ROUNDS = 3;

/** A real, small job: ~300 training records over 2 workers, evaluation on 200. */
const rayJob = {
  name: 'artifacts',
  rounds: ROUNDS,
  model: { kind: 'mlp', hidden: [16] },
  dataset: { format: 'idx', preset: 'fashion-mnist', trainExamples: 300, testExamples: 200 },
  workers: { count: 2, cpusPerWorker: 0.5, maxRestarts: 1 },
  coordinator: { cpus: 0.5 },
  privacy: { clipNorm: 1, noiseMultiplier: 1, delta: 1e-5, expectedBatchSize: 30, epsilonBudget: 100 },
  secureAggregation: { mode: 'masking', threshold: 2 },
  optimizer: { kind: 'sgd', learningRate: 0.1 },
  evaluation: { everyRounds: 2 },
};

/**
 * A small BERT in Hugging Face's layout (2 layers, hidden 16; all-MiniLM-L6-v2's tokenizer.json,
 * fetched once into the cache), with fixed pseudo-random weights: a LoRA job on it takes seconds.
 */
async function writeSmallBert(dir: string): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  const minilm = await resolveModelPreset('all-minilm-l6-v2');
  fs.copyFileSync(path.join(minilm, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  fs.writeFileSync(
    path.join(dir, 'config.json'),
    JSON.stringify({
      model_type: 'bert',
      vocab_size: 30522,
      hidden_size: 16,
      num_hidden_layers: 2,
      num_attention_heads: 2,
      intermediate_size: 32,
      max_position_embeddings: 64,
      type_vocab_size: 2,
      layer_norm_eps: 1e-12,
      pad_token_id: 0,
      hidden_act: 'gelu',
    }),
  );
  const def = hfBert({ config: readBertConfig(dir), seqLen: 16, numClasses: 2, train: 'full' });
  const tensors: Record<string, ReturnType<typeof tensor>> = {};
  let k = 0;
  for (const p of def.params) {
    const m = hfName(p.name);
    if (!m) continue;
    const n = p.shape.reduce((a, b) => a * b, 1);
    const v = Float32Array.from(
      { length: n },
      () => (p.name.endsWith('.gamma') ? 1 : 0) + 0.2 * Math.sin(++k),
    );
    tensors[m.hf] = m.transpose
      ? tensor(transpose2d(v, p.shape[0]!, p.shape[1]!), [p.shape[1]!, p.shape[0]!])
      : tensor(v, [...p.shape]);
  }
  fs.writeFileSync(path.join(dir, 'model.safetensors'), encodeSafetensors(tensors, { format: 'pt' }));
}

/** Python's safetensors reads `file`: {name: [shape, dtype]}. */
function loadWithPython(file: string): Record<string, [number[], string]> {
  const out = execFileSync(
    path.join(root, '.venv', 'bin', 'python'),
    [
      '-c',
      'import json, sys\nfrom safetensors.numpy import load_file\n' +
        'print(json.dumps({k: [list(v.shape), str(v.dtype)] for k, v in load_file(sys.argv[1]).items()}))',
      file,
    ],
    { encoding: 'utf8' },
  );
  return JSON.parse(out) as Record<string, [number[], string]>;
}

const sha256 = (file: string) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

/** Runs the CLI from the sources; resolves with its exit code and output. */
function cli(args: string[], env: NodeJS.ProcessEnv) {
  const child = spawn(
    process.execPath,
    [
      '--conditions=tensorguard-source',
      '--import',
      'tsx',
      path.join(root, 'driver/src/bin/tensorguard.ts'),
      ...args,
    ],
    { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.once('close', (code) => resolve({ code, stdout, stderr })),
  );
}

async function refusal(p: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error('expected the call to fail');
}

describe('GetJobArtifact on a real Ray job over TLS', function () {
  this.timeout(300_000);
  let dir: string;
  let head: LocalHead;
  let env: NodeJS.ProcessEnv;
  let creds: grpc.ChannelCredentials;
  const servers: ServerProcess[] = [];
  let jobId = '';

  const serveArgs = (...extra: string[]) => [
    '--listen',
    '127.0.0.1:0',
    '--api-keys',
    keyFile(dir, [
      { id: 'kt', tenant: 't', key: KEY_T },
      { id: 'ku', tenant: 'u', key: KEY_U },
    ]),
    '--db',
    path.join(dir, 'jobs.db'),
    '--state-root',
    path.join(dir, 'state'),
    '--data-root',
    path.join(dir, 'data'),
    '--tls-cert',
    path.join(dir, 'tls.crt'),
    '--tls-key',
    path.join(dir, 'tls.key'),
    ...extra,
  ];

  before(async () => {
    dir = tmpDir('artifact');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=tensorguard-test',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        path.join(dir, 'tls.key'),
        '-out',
        path.join(dir, 'tls.crt'),
      ],
      { stdio: 'ignore' },
    );
    creds = grpc.credentials.createSsl(fs.readFileSync(path.join(dir, 'tls.crt')));
    head = await LocalHead.start({ root, numCpus: 4 });
    env = {
      RAY_ADDRESS: head.info.dashboardUrl,
      RAY_AUTH_TOKEN: head.info.token,
      TENSORGUARD_RAY_PYTHON: path.join(root, '.venv', 'bin', 'python'),
    };
  });
  afterEach(async () => {
    for (const s of servers.splice(0)) {
      if (s.child.exitCode === null && s.child.signalCode === null) await s.kill();
    }
  });
  after(async () => {
    await head?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('downloads the finished job’s checkpoint (SHA-256 checked, loads in Python safetensors) and privacy report; no adapter; tenant-scoped', async () => {
    const server = await startServer(serveArgs(), env, 60_000);
    servers.push(server);
    const c = client(server.address, creds);
    const md = bearer(KEY_T);
    try {
      const { job } = await call(
        c,
        c.submitJob,
        { requestId: 'artifacts-1', spec: { document: rayJob }, validateOnly: false },
        md,
        60_000,
      );
      jobId = job!.jobId;
      const dl = (kind: Parameters<typeof downloadJobArtifact>[1]['kind'], key = KEY_T) =>
        downloadJobArtifact(c, { jobId, kind, outDir: path.join(dir, 'out', kind), metadata: bearer(key) });

      // Not yet: the job has not ended.
      const early = await refusal(dl('CHECKPOINT'));
      expect(early.code).to.equal(grpc.status.FAILED_PRECONDITION);
      expect(early.details).to.match(
        new RegExp(`^job ${jobId} is (QUEUED|RUNNING): its artifacts can be fetched once it has ended`),
      );

      // The CLI follows the same Ray job (the API's job id is its Ray submission id).
      const watching = cli(['status', jobId, '--watch', '--address', head.info.dashboardUrl], env);
      const w = await watch(c, { jobId, afterEventId: 0 }, md);
      expect(w.error, server.logs().slice(-3000)).to.equal(null);
      expect(w.events.at(-1)!.stateChanged?.state, JSON.stringify(w.events.at(-1))).to.equal(
        pb.JobState.JOB_STATE_SUCCEEDED,
      );
      // Evaluation after rounds 2 and 3 (everyRounds 2, and the last round), with the held-out loss.
      const evals = w.events.filter((e) => e.evalMetrics).map((e) => e.evalMetrics!);
      expect(evals.map((e) => e.round)).to.deep.equal([2, ROUNDS]);
      for (const e of evals) {
        expect(e.accuracy).to.be.within(0, 1);
        expect(e.loss).to.be.a('number').and.be.greaterThan(0).and.lessThan(50);
      }
      const st = await watching;
      expect(st.code, st.stderr.slice(-2000)).to.equal(0);
      // train's live line (one per round off a terminal), ε against the job's budget.
      expect(st.stderr).to.match(
        new RegExp(
          `round ${ROUNDS}/${ROUNDS} · ε \\d+\\.\\d{3} of 100 · eval acc 0\\.\\d{3} · [\\d.]+ s/round · ETA 0s`,
        ),
      );
      expect(st.stdout).to.match(new RegExp(`^job ${jobId}: SUCCEEDED`));

      // The checkpoint: one safetensors file, the model LATEST points to, SHA-256 checked.
      const files = await dl('CHECKPOINT');
      expect(files.map((f) => [f.name, f.mediaType])).to.deep.equal([
        ['model.safetensors', 'application/octet-stream'],
      ]);
      const model = files[0]!;
      expect(sha256(model.path)).to.equal(model.sha256);
      expect(fs.statSync(model.path).size).to.equal(model.sizeBytes);
      const ckDir = path.join(dir, 'state', 't', 'jobs', jobId, 'checkpoints');
      const latest = fs.readFileSync(path.join(ckDir, 'LATEST'), 'utf8').trim();
      expect(
        fs.readFileSync(model.path).equals(fs.readFileSync(path.join(ckDir, latest, 'model.safetensors'))),
      ).to.equal(true);
      const loaded = execFileSync(
        path.join(root, '.venv', 'bin', 'python'),
        [
          '-c',
          'import json, sys\nfrom safetensors.numpy import load_file\n' +
            't = load_file(sys.argv[1])\n' +
            'print(json.dumps({k: [list(v.shape), str(v.dtype), bool((abs(v) < 1e6).all())] for k, v in t.items()}))',
          model.path,
        ],
        { encoding: 'utf8' },
      );
      const tensors = JSON.parse(loaded) as Record<string, [number[], string, boolean]>;
      const shapes = Object.values(tensors).map(([s]) => s.join('x'));
      // 784 → 16 → 10: two kernels and two biases, finite float32.
      expect(shapes.sort()).to.deep.equal(['10', '16', '16x10', '784x16'], loaded);
      for (const [, dtype, finite] of Object.values(tensors)) {
        expect(dtype).to.equal('float32');
        expect(finite).to.equal(true);
      }

      // The coordinator's privacy report: the ε GetJob shows.
      const [report] = await dl('PRIVACY_REPORT');
      expect(sha256(report!.path)).to.equal(report!.sha256);
      const got = await call(c, c.getJob, { jobId }, md);
      const rep = JSON.parse(fs.readFileSync(report!.path, 'utf8')) as {
        epsilon: number;
        releasedRounds: unknown[];
      };
      expect(rep.epsilon).to.equal(got.job!.privacySpent!.epsilon);
      expect(rep.releasedRounds).to.have.length(ROUNDS);

      // The metrics, one line per round, whose eval loss is the one WatchJob reported; the report.
      const [metrics] = await dl('METRICS');
      expect(sha256(metrics!.path)).to.equal(metrics!.sha256);
      const rows = fs
        .readFileSync(metrics!.path, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { round: number; eval_loss: number | null });
      expect(rows.map((r) => r.round)).to.deep.equal([1, 2, 3]);
      expect(rows.filter((r) => r.eval_loss !== null).map((r) => r.eval_loss)).to.deep.equal(
        evals.map((e) => e.loss),
      );
      const [html] = await dl('REPORT');
      expect(html!.mediaType).to.equal('text/html');
      const page = fs.readFileSync(html!.path, 'utf8');
      expect(page).to.match(/^<!doctype html>/i);
      expect(page).to.include(`${jobId}/checkpoints/${latest}`);
      // Rendered for the tenant: no host path (the state root, the data root) in it.
      expect(page).to.not.include(dir);

      // An MLP trains no adapter: NOT_FOUND saying so, and nothing written.
      const adapter = await refusal(dl('ADAPTER'));
      expect(adapter.code).to.equal(grpc.status.NOT_FOUND);
      expect(adapter.details).to.equal(
        `job ${jobId} has no adapter: its model (model.kind "mlp") trains no LoRA adapter; ask for the checkpoint (ARTIFACT_KIND_CHECKPOINT)`,
      );
      expect(fs.readdirSync(path.join(dir, 'out', 'ADAPTER'))).to.deep.equal([]);

      // Another tenant's job is NOT_FOUND exactly like a job that does not exist.
      const other = await refusal(dl('CHECKPOINT', KEY_U));
      expect(other.code).to.equal(grpc.status.NOT_FOUND);
      expect(other.details).to.equal(`job ${jobId} not found`);
      const none = 'job-' + 'b'.repeat(26);
      const missing = await refusal(
        downloadJobArtifact(c, {
          jobId: none,
          kind: 'CHECKPOINT',
          outDir: path.join(dir, 'out', 'x'),
          metadata: md,
        }),
      );
      expect([missing.code, missing.details]).to.deep.equal([grpc.status.NOT_FOUND, `job ${none} not found`]);
      // A kind this server does not know is INVALID_ARGUMENT naming the field.
      const unknown = await refusal(
        new Promise((resolve, reject) => {
          const s = c.getJobArtifact({ jobId, kind: 0 }, md);
          s.on('data', () => undefined);
          s.on('error', reject);
          s.on('end', resolve);
        }),
      );
      expect(unknown.code).to.equal(grpc.status.INVALID_ARGUMENT);
      expect(unknown.details).to.include('kind: is required');
    } finally {
      c.close();
      expect(await server.stop()).to.equal(0);
    }
  });

  it("downloads a LoRA fine-tune's PEFT adapter (every file's SHA-256 checked; the weights load in Python)", async () => {
    // The tenant's own model folder and data, under its data root (paths relative to it).
    const data = path.join(dir, 'data', 't');
    await writeSmallBert(path.join(data, 'bert'));
    const words = ['great', 'awful', 'moving', 'boring'];
    const rows = Array.from(
      { length: 16 },
      (_, i) => `"a ${words[i % 4]} film",${(i % 4) % 2 === 0 ? 1 : 0}`,
    );
    fs.writeFileSync(path.join(data, 'reviews.csv'), ['text,label', ...rows].join('\n') + '\n');
    // A held-out split of other reviews: a test set sharing training records is refused.
    const held = words.map((w, i) => `"an utterly ${w} movie",${i % 2 === 0 ? 1 : 0}`);
    fs.writeFileSync(path.join(data, 'held-out.csv'), ['text,label', ...held].join('\n') + '\n');
    const server = await startServer(serveArgs(), env, 60_000);
    servers.push(server);
    const c = client(server.address, creds);
    const md = bearer(KEY_T);
    try {
      const doc = {
        name: 'lora',
        rounds: 2,
        model: {
          kind: 'hf-bert',
          path: 'bert',
          lora: { rank: 2, alpha: 4, targetModules: ['query', 'value'] },
        },
        dataset: {
          format: 'csv',
          path: 'reviews.csv',
          testPath: 'held-out.csv',
          numClasses: 2,
          maxTokens: 16,
        },
        workers: { count: 2, cpusPerWorker: 0.5 },
        coordinator: { cpus: 0.5 },
        privacy: { clipNorm: 1, noiseMultiplier: 1, delta: 1e-5, samplingRate: 0.5, epsilonBudget: 100 },
        secureAggregation: { mode: 'masking', threshold: 2 },
        optimizer: { kind: 'sgd', learningRate: 0.05 },
        evaluation: { everyRounds: 2 },
      };
      const { job } = await call(
        c,
        c.submitJob,
        { requestId: 'lora-1', spec: { document: doc }, validateOnly: false },
        md,
        60_000,
      );
      const w = await watch(c, { jobId: job!.jobId, afterEventId: 0 }, md);
      expect(w.error, server.logs().slice(-3000)).to.equal(null);
      expect(w.events.at(-1)!.stateChanged?.state, JSON.stringify(w.events.at(-1))).to.equal(
        pb.JobState.JOB_STATE_SUCCEEDED,
      );
      const files = await downloadJobArtifact(c, {
        jobId: job!.jobId,
        kind: 'ADAPTER',
        outDir: path.join(dir, 'out', 'lora'),
        metadata: md,
      });
      expect(files.map((f) => [f.name, f.mediaType])).to.deep.equal([
        ['adapter_config.json', 'application/json'],
        ['adapter_model.safetensors', 'application/octet-stream'],
        ['head.safetensors', 'application/octet-stream'],
      ]);
      for (const f of files) expect(sha256(f.path), f.name).to.equal(f.sha256);
      const cfg = JSON.parse(fs.readFileSync(files[0]!.path, 'utf8')) as Record<string, unknown>;
      expect(cfg).to.include({ peft_type: 'LORA', r: 2, lora_alpha: 4 });
      const lora = loadWithPython(files[1]!.path);
      // 2 layers × query/value × A/B, in PEFT's names: A is rank × hidden, B hidden × rank.
      expect(Object.keys(lora)).to.have.length(8);
      expect(lora['base_model.model.encoder.layer.1.attention.self.value.lora_A.weight']).to.deep.equal([
        [2, 16],
        'float32',
      ]);
      expect(lora['base_model.model.encoder.layer.1.attention.self.value.lora_B.weight']).to.deep.equal([
        [16, 2],
        'float32',
      ]);
      expect(Object.keys(loadWithPython(files[2]!.path))).to.include('weight');
    } finally {
      c.close();
      expect(await server.stop()).to.equal(0);
    }
  });

  it('a restarted server refuses the checkpoint above --max-artifact-bytes (RESOURCE_EXHAUSTED) and sends what fits', async () => {
    expect(jobId, 'the first test ran a job').to.not.equal('');
    const ckDir = path.join(dir, 'state', 't', 'jobs', jobId, 'checkpoints');
    const latest = fs.readFileSync(path.join(ckDir, 'LATEST'), 'utf8').trim();
    const size = fs.statSync(path.join(ckDir, latest, 'model.safetensors')).size;
    // Same database and state root; a backend that needs no cluster (the job has ended).
    const server = await startServer(
      serveArgs(
        '--backend',
        'local-process',
        '--local-round-ms',
        '20',
        '--max-artifact-bytes',
        String(size - 1),
      ),
    );
    servers.push(server);
    const c = client(server.address, creds);
    const md = bearer(KEY_T);
    try {
      const big = await refusal(
        downloadJobArtifact(c, { jobId, kind: 'CHECKPOINT', outDir: path.join(dir, 'out2'), metadata: md }),
      );
      expect(big.code).to.equal(grpc.status.RESOURCE_EXHAUSTED);
      expect(big.details).to.equal(
        `job ${jobId}'s checkpoint is ${size} bytes, above this server's limit of ${size - 1} bytes per artifact; ` +
          'ask the operator to raise serve --max-artifact-bytes',
      );
      expect(fs.readdirSync(path.join(dir, 'out2'))).to.deep.equal([]);
      const [report] = await downloadJobArtifact(c, {
        jobId,
        kind: 'PRIVACY_REPORT',
        outDir: path.join(dir, 'out2'),
        metadata: md,
      });
      expect(report!.sizeBytes).to.be.lessThan(size);

      // Eval loss reaches WatchJob's EvalMetrics (the local-process job prints a synthetic one).
      const { job } = await call(
        c,
        c.submitJob,
        { requestId: 'local-1', spec: { document: { ...rayJob, rounds: 4 } }, validateOnly: false },
        md,
        60_000,
      );
      const w = await watch(c, { jobId: job!.jobId, afterEventId: 0 }, md);
      expect(w.error).to.equal(null);
      const evals = w.events.filter((e) => e.evalMetrics).map((e) => e.evalMetrics!);
      expect(evals.map((e) => e.round)).to.deep.equal([2, 4]);
      expect(evals.map((e) => e.loss)).to.deep.equal([1, 0.5]);
      // It trained nothing, so it has no checkpoint: NOT_FOUND says why.
      const none = await refusal(
        downloadJobArtifact(c, {
          jobId: job!.jobId,
          kind: 'CHECKPOINT',
          outDir: path.join(dir, 'out3'),
          metadata: md,
        }),
      );
      expect(none.code).to.equal(grpc.status.NOT_FOUND);
      expect(none.details).to.equal(
        `job ${job!.jobId} has no checkpoint: it ended (SUCCEEDED) without writing one`,
      );
    } finally {
      c.close();
      expect(await server.stop()).to.equal(0);
    }
  });
});
