// The built `tensorguard` binary, as users run it.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
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
      maskKernel: string | null;
      dpKernels: string[] | null;
      problems: string[];
    };
    expect(report.backend).to.equal('tensorflow');
    // setup builds the mask kernel on this machine (gcc, Node's headers, an AES-capable CPU)
    expect(report.maskKernel).to.be.oneOf(['vaes', 'aesni']);
    // and dp's TensorFlow kernels (g++, the C API headers from the wheel, an AVX2 + FMA CPU)
    expect(report.dpKernels).to.deep.equal([
      'TgConvPerExample',
      'TgWeightedRowSum',
      'TgGelu',
      'TgGeluGrad',
      'TgLayerNorm',
      'TgLayerNormGrad',
    ]);
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

  it('is linked by npm as node_modules/.bin/tensorguard (a committed shim), so `npx tensorguard` runs', () => {
    // npm links bins at `npm ci`, before the build: the bin must be a committed file.
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'driver', 'package.json'), 'utf8')) as {
      bin: Record<string, string>;
    };
    const shim = path.join(root, 'driver', pkg.bin.tensorguard!);
    expect(shim).not.to.include(`${path.sep}dist${path.sep}`);
    const linked = path.join(root, 'node_modules', '.bin', 'tensorguard');
    expect(fs.realpathSync(linked)).to.equal(fs.realpathSync(shim));
    const res = spawnSync(linked, ['--help'], { encoding: 'utf8', timeout: 60_000 });
    expect(res.status, res.stderr).to.equal(0);
    expect(res.stdout).to.match(/^usage: tensorguard <command>/);
    expect(res.stdout).to.include('doctor');
  });

  it('refuses an unknown command and an unknown option with exit 2', () => {
    const a = tensorguard(['frobnicate']);
    expect(a.status).to.equal(2);
    expect(a.stderr).to.include('unknown command "frobnicate"');
    const b = tensorguard(['doctor', '--jsn']);
    expect(b.status).to.equal(2);
    expect(b.stderr).to.include('tensorguard doctor: unknown option --jsn');
  });

  it("privacy --json gives ε ≈ 3.01 for TF Privacy's MNIST tutorial (σ 1.1, batch 256 of 60000, 60 epochs)", () => {
    // The tutorial's 3.01 uses the classic RDP→(ε, δ) conversion; the default (improved, Balle et
    // al. 2020) is tighter for the same run.
    const args = ['--dataset-size', '60000', '--batch-size', '256', '--epochs', '60'];
    const common = ['--noise-multiplier', '1.1', '--delta', '1e-5', '--json'];
    const classic = tensorguard(['privacy', ...args, ...common, '--conversion', 'classic']);
    expect(classic.status, classic.stderr).to.equal(0);
    const c = JSON.parse(classic.stdout) as { epsilon: number; steps: number; sampling_rate: number };
    expect(c.epsilon).to.be.closeTo(3.01, 0.005);
    expect(c.steps).to.equal(14063);
    expect(c.sampling_rate).to.be.closeTo(256 / 60000, 1e-12);
    const improved = tensorguard(['privacy', ...args, ...common]);
    expect(improved.status, improved.stderr).to.equal(0);
    const i = JSON.parse(improved.stdout) as { epsilon: number; conversion: string };
    expect(i.conversion).to.equal('improved');
    expect(i.epsilon).to.be.lessThan(c.epsilon).and.greaterThan(2.4);
    // The same run given as q and steps, in text.
    const text = tensorguard([
      'privacy',
      '--sampling-rate',
      '0.004',
      '--steps',
      '15000',
      '--noise-multiplier',
      '1.1',
      '--delta',
      '1e-5',
    ]);
    expect(text.status, text.stderr).to.equal(0);
    expect(text.stdout).to.match(/^ε = 2\.50\d+ at δ = 0\.00001\n/);
  });

  it('privacy refuses a bad argument with exit 2 and names it; --help prints the usage', () => {
    const bad = tensorguard([
      'privacy',
      '--sampling-rate',
      '2',
      '--steps',
      '10',
      '--noise-multiplier',
      '1',
      '--delta',
      '1e-5',
    ]);
    expect(bad.status).to.equal(2);
    expect(bad.stdout).to.equal('');
    expect(bad.stderr).to.equal('tensorguard privacy: --sampling-rate must be a number in (0, 1], got "2"\n');
    const missing = tensorguard([
      'privacy',
      '--sampling-rate',
      '0.01',
      '--steps',
      '10',
      '--noise-multiplier',
      '1',
    ]);
    expect(missing.status).to.equal(2);
    expect(missing.stderr).to.include('--delta is required');
    const help = tensorguard(['privacy', '--help']);
    expect(help.status).to.equal(0);
    expect(help.stdout).to.match(/^usage: tensorguard privacy \[options\]/);
    const list = tensorguard(['--help']);
    expect(list.stdout).to.match(/^ {2}privacy +ε of a DP-SGD run/m);
  });

  it('demo --help describes the Ray quick-start job; a bad option exits 2 before any Ray work', () => {
    const help = tensorguard(['demo', '--help']);
    expect(help.status).to.equal(0);
    expect(help.stdout).to.include('usage: tensorguard demo [--full | --finetune] [--json] [--num-cpus N]');
    expect(help.stdout).to.include('4 workers on a private local Ray cluster');
    const bad = tensorguard(['demo', '--fast']);
    expect(bad.status).to.equal(2);
    expect(bad.stderr).to.include('tensorguard demo: unknown option --fast');
    expect(bad.stderr).not.to.include('Ray head');
  });
});
