// Hostile input against the API server (issue 18, "tenants and paths"): every path in a job
// document is confined to the tenant's data root, checkpoints to the job's own directory under
// the state root. Each probe of the issue is a row below, run against a real `tensorguard serve`
// (local-process backend: the refusal is the server's, no file is read by a job), and each
// asserts INVALID_ARGUMENT naming the field, no host path or file content in the message, and
// that the other tenant's files are byte-for-byte unchanged.
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { decodeStatus } from '../../driver/src/api/edge/status-details.js';
import {
  bearer,
  call,
  client,
  jobDocument,
  keyFile,
  type Client,
  type ServerProcess,
  startServer,
  tmpDir,
} from '../api/helpers.js';

const KEY_A = 'tg_paths_key_tenant_alice_0123456789';
const KEY_B = 'tg_paths_key_tenant_bob_0123456789ab';

async function refusal(p: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error('expected the call to be refused, it succeeded');
}

function fields(e: grpc.ServiceError): string[] {
  const bin = e.metadata?.get('grpc-status-details-bin')[0];
  if (!bin) return [];
  return (decodeStatus(bin as Buffer).details.badRequest ?? []).map((v) => v.field);
}

/** sha256 of every file under `dir` (path → hash), to prove nothing of it changed. */
function hashTree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    const p = path.join(e.parentPath, e.name);
    if (e.isFile()) out[p] = crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');
  }
  return out;
}

describe('hostile input: a job document reaches only its tenant’s files (tensorguard serve)', function () {
  this.timeout(60_000);
  let dir: string;
  let dataRoot: string;
  let stateRoot: string;
  let server: ServerProcess;
  let c: Client;
  const A = bearer(KEY_A);
  let bobBefore: Record<string, string>;
  let bobJobDir: string;
  let bobModel: string;

  before(async () => {
    dir = fs.realpathSync(tmpDir('paths'));
    dataRoot = path.join(dir, 'data');
    stateRoot = path.join(dir, 'state');
    fs.mkdirSync(path.join(dataRoot, 'alice'), { recursive: true });
    fs.mkdirSync(path.join(dataRoot, 'bob'), { recursive: true });
    fs.writeFileSync(path.join(dataRoot, 'alice', 'train.csv'), 'label,x\n1,0.5\n');
    const secret = path.join(dataRoot, 'bob', 'patients.csv');
    fs.writeFileSync(secret, 'label,name\n1,Jane Roe\n', { mode: 0o600 });
    // Bob's job directory: a checkpoint, LATEST and a ledger that a hostile checkpoint.dir would move.
    bobJobDir = path.join(stateRoot, 'bob', 'jobs', 'job-bobbobbobbobbobbobbobbobbo');
    fs.mkdirSync(path.join(bobJobDir, 'checkpoints', 'round-10'), { recursive: true });
    fs.writeFileSync(path.join(bobJobDir, 'checkpoints', 'LATEST'), 'round-10\n');
    fs.writeFileSync(path.join(bobJobDir, 'checkpoints', 'ledger.jsonl'), '{"round":10}\n');
    bobModel = path.join(bobJobDir, 'checkpoints', 'round-10', 'model.safetensors');
    fs.writeFileSync(bobModel, crypto.randomBytes(256));
    fs.symlinkSync('/etc', path.join(dataRoot, 'alice', 'etc'));
    fs.symlinkSync(path.join(dataRoot, 'bob'), path.join(dataRoot, 'alice', 'bob'));
    bobBefore = { ...hashTree(path.join(dataRoot, 'bob')), ...hashTree(path.join(stateRoot, 'bob')) };
    const keys = keyFile(dir, [
      { id: 'alice', tenant: 'alice', key: KEY_A },
      { id: 'bob', tenant: 'bob', key: KEY_B },
    ]);
    server = await startServer([
      '--listen',
      '127.0.0.1:0',
      '--api-keys',
      keys,
      '--db',
      path.join(dir, 'jobs.db'),
      '--backend',
      'local-process',
      '--local-round-ms',
      '60000',
      '--max-jobs-per-tenant',
      '2',
      '--max-workers-per-tenant',
      '5',
      '--data-root',
      dataRoot,
      '--state-root',
      stateRoot,
    ]);
    c = client(server.address);
  });

  after(async () => {
    c?.close();
    await server?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const csv = (p: Record<string, unknown>) => ({ format: 'csv', labelColumn: 'label', numClasses: 2, ...p });
  const rows: [string, () => Record<string, unknown>, string][] = [
    [
      '/etc/passwd as dataset.path',
      () => jobDocument({ dataset: csv({ path: '/etc/passwd' }) }),
      'dataset.path',
    ],
    ['../ traversal', () => jobDocument({ dataset: csv({ path: '../bob/patients.csv' }) }), 'dataset.path'],
    [
      'a symlink inside the data root pointing out',
      () => jobDocument({ dataset: csv({ path: 'etc/passwd' }) }),
      'dataset.path',
    ],
    [
      "a symlink to another tenant's data",
      () => jobDocument({ dataset: csv({ path: 'bob/patients.csv' }) }),
      'dataset.path',
    ],
    [
      "another tenant's data dir by absolute path",
      () => jobDocument({ dataset: csv({ path: path.join(dataRoot, 'bob', 'patients.csv') }) }),
      'dataset.path',
    ],
    [
      "another tenant's file as dataset.testPath",
      () =>
        jobDocument({
          dataset: csv({ path: 'train.csv', testPath: path.join(dataRoot, 'bob', 'patients.csv') }),
        }),
      'dataset.testPath',
    ],
    [
      'evaluation.testPath outside',
      () =>
        jobDocument({
          dataset: csv({ path: 'train.csv' }),
          evaluation: { everyRounds: 1, testPath: '/etc/shadow' },
        }),
      'evaluation.testPath',
    ],
    [
      "another tenant's job dir as checkpoint.dir",
      () => jobDocument({ checkpoint: { dir: path.join(bobJobDir, 'checkpoints'), everyRounds: 1 } }),
      'checkpoint.dir',
    ],
    [
      '/root/x as checkpoint.dir',
      () => jobDocument({ checkpoint: { dir: '/root/x', everyRounds: 1 } }),
      'checkpoint.dir',
    ],
    [
      "another tenant's model as model.baseCheckpoint",
      () => jobDocument({ model: { kind: 'mlp', hidden: [16], baseCheckpoint: bobModel } }),
      'model.baseCheckpoint',
    ],
    [
      "another tenant's job adapter as model.initAdapter",
      () =>
        jobDocument({
          model: {
            kind: 'hf-bert',
            preset: 'all-minilm-l6-v2',
            initAdapter: path.join(bobJobDir, 'checkpoints', 'adapter'),
          },
          dataset: csv({ path: 'train.csv', textColumn: 'text' }),
        }),
      'model.initAdapter',
    ],
  ];

  let n = 0;
  for (const [what, doc, field] of rows) {
    it(`refuses ${what}: INVALID_ARGUMENT naming spec.document.${field}`, async () => {
      const e = await refusal(
        call(
          c,
          c.submitJob,
          { requestId: `probe-${++n}`, spec: { document: doc() }, validateOnly: false },
          A,
        ),
      );
      expect(e.code).to.equal(grpc.status.INVALID_ARGUMENT);
      expect(fields(e)).to.deep.equal([`spec.document.${field}`]);
      // No host path, no file content.
      for (const leak of [dir, '/etc', '/root', 'root:x', 'Jane Roe', 'patients']) {
        expect(e.details).not.to.include(leak);
      }
      expect(/\bpid\b|\n\s+at /i.test(e.details)).to.equal(false);
    });
  }

  it('a YAML document is confined the same way', async () => {
    const yaml = JSON.stringify(jobDocument({ dataset: csv({ path: '/etc/passwd' }) }));
    const e = await refusal(
      call(c, c.submitJob, { requestId: 'probe-yaml', spec: { yaml }, validateOnly: false }, A),
    );
    expect(e.code).to.equal(grpc.status.INVALID_ARGUMENT);
    expect(fields(e)).to.deep.equal(['spec.yaml.dataset.path']);
  });

  it("accepts a relative path inside the tenant's data root", async () => {
    const res = await call(
      c,
      c.submitJob,
      {
        requestId: 'ok-1',
        spec: { document: jobDocument({ dataset: csv({ path: 'train.csv' }) }) },
        validateOnly: true,
      },
      A,
    );
    expect(res.job).to.equal(undefined);
  });

  it('per-tenant limits: RESOURCE_EXHAUSTED beyond the jobs and workers a tenant may hold, others unaffected', async () => {
    const B = bearer(KEY_B);
    const submit = (id: string, md: grpc.Metadata, workers = 2) =>
      call(
        c,
        c.submitJob,
        {
          requestId: id,
          spec: { document: jobDocument({ workers: { count: workers } }) },
          validateOnly: false,
        },
        md,
      );
    const j1 = (await submit('lim-1', B)).job!;
    const j2 = (await submit('lim-2', B)).job!;
    const third = await refusal(submit('lim-3', B));
    expect(third.code).to.equal(grpc.status.RESOURCE_EXHAUSTED);
    expect(third.details).to.include('limit is 2');
    // A retry of an accepted request is not counted against itself.
    expect((await submit('lim-2', B)).job!.jobId).to.equal(j2.jobId);
    // Another tenant is not limited by bob's jobs.
    const a = (await submit('lim-a', A)).job!;
    await call(c, c.cancelJob, { jobId: j1.jobId, reason: 'limits' }, B);
    // One job (2 workers) left: 2 + 4 > 5 workers.
    const wide = await refusal(submit('lim-4', B, 4));
    expect(wide.code).to.equal(grpc.status.RESOURCE_EXHAUSTED);
    expect(wide.details).to.include('workers');
    const j5 = (await submit('lim-5', B, 3)).job!;
    for (const [id, md] of [
      [j2.jobId, B],
      [j5.jobId, B],
      [a.jobId, A],
    ] as const) {
      await call(c, c.cancelJob, { jobId: id, reason: 'limits' }, md);
    }
  });

  it("left no file of the other tenant changed, and none written outside the job's own directory", () => {
    const after = { ...hashTree(path.join(dataRoot, 'bob')), ...hashTree(path.join(stateRoot, 'bob')) };
    expect(after).to.deep.equal(bobBefore);
    expect(fs.existsSync('/root/x')).to.equal(false);
  });
});
