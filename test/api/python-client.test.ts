// A client in another language, generated from the same .proto: Python grpcio stubs built with
// grpcio-tools (from the project's .venv) into a temporary folder, then the example client
// (driver/examples/python/client.py) submits a job and follows it against a real server.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { jobDocument, keyFile, root, startServer, tmpDir } from './helpers.js';

const KEY = 'tg_python_client_key_0123456789abcd';
const python = path.join(root, '.venv', 'bin', 'python');

describe('Python grpcio client', function () {
  this.timeout(120_000);

  it('submits a job, follows its events to completion and verifies the privacy report', async () => {
    const dir = tmpDir('py');
    const out = path.join(dir, 'gen');
    fs.mkdirSync(out);
    const gen = spawnSync(
      python,
      [
        '-m',
        'grpc_tools.protoc',
        '-I',
        path.join(root, 'proto'),
        `--python_out=${out}`,
        `--grpc_python_out=${out}`,
        'tensorguard/v1/common.proto',
        'tensorguard/v1/training_service.proto',
      ],
      { encoding: 'utf8', cwd: path.join(root, 'proto') },
    );
    expect(gen.status, gen.stderr).to.equal(0);
    const server = await startServer([
      '--listen',
      '127.0.0.1:0',
      '--api-keys',
      keyFile(dir, [{ id: 'py', tenant: 'python', key: KEY }]),
      '--db',
      path.join(dir, 'jobs.db'),
      '--backend',
      'local-process',
      '--local-round-ms',
      '100',
    ]);
    try {
      const jobFile = path.join(dir, 'job.json');
      fs.writeFileSync(jobFile, JSON.stringify(jobDocument({ rounds: 4 })));
      const res = spawnSync(
        python,
        [
          path.join(root, 'driver/examples/python/client.py'),
          '--address',
          server.address,
          '--key',
          KEY,
          '--job',
          jobFile,
        ],
        { encoding: 'utf8', env: { ...process.env, PYTHONPATH: out }, timeout: 60_000 },
      );
      expect(res.status, res.stderr).to.equal(0);
      const lines = res.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines[0]).to.include({ type: 'submitted', created: true });
      const events = lines.filter((l) => l.type === 'event');
      expect(events.map((e) => e.event_id)).to.deep.equal(events.map((_, i) => i + 1));
      expect(events.filter((e) => e.kind === 'round_progress').map((e) => e.round)).to.deep.equal([
        1, 2, 3, 4,
      ]);
      expect(events.at(-1)).to.include({ kind: 'state_changed', state: 'JOB_STATE_SUCCEEDED' });
      const report = lines.at(-1)!;
      expect(report).to.include({
        type: 'privacy_report',
        signature_verified: true,
        key_id: server.signingKeyId,
      });
      expect(report.epsilon).to.equal(events.filter((e) => e.kind === 'round_progress').at(-1)!.epsilon);
    } finally {
      await server.stop();
    }
  });
});
