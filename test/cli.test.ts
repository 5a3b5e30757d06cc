// The built `tensorguard` binary, as users run it.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(root, 'driver', 'dist', 'bin', 'tensorguard.js');

function tensorguard(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [bin, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 120_000,
  });
}

describe('tensorguard CLI', () => {
  it('doctor --json reports the native backend and exits 0 on a set-up machine', () => {
    const res = tensorguard(['doctor', '--json']);
    expect(res.status, res.stderr).to.equal(0);
    const report = JSON.parse(res.stdout) as {
      backend: string;
      tensorflowVersion: string;
      ray: string;
      problems: string[];
    };
    expect(report.backend).to.equal('tensorflow');
    expect(report.tensorflowVersion).to.match(/^2\.\d+\.\d+$/);
    expect(report.ray).to.match(/^2\.\d+/);
    expect(report.problems).to.deep.equal([]);
  });

  it('doctor exits 1 and says what to do when the dataset is missing', () => {
    const res = tensorguard(['doctor'], { TENSORGUARD_DATA_DIR: '/nonexistent/fmnist' });
    expect(res.status).to.equal(1);
    expect(res.stdout).to.include(
      'Fashion-MNIST not found in /nonexistent/fmnist: `apt-get install dataset-fashion-mnist` as root, or set TENSORGUARD_DATA_DIR',
    );
  });

  it('refuses an unknown command and an unknown option with exit 2', () => {
    const a = tensorguard(['frobnicate']);
    expect(a.status).to.equal(2);
    expect(a.stderr).to.include('unknown command "frobnicate"');
    const b = tensorguard(['doctor', '--jsn']);
    expect(b.status).to.equal(2);
    expect(b.stderr).to.include('tensorguard doctor: unknown option --jsn');
  });
});
