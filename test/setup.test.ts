// The setup step that both README commands run first: idempotent, and clear when it fails.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function setup(env: NodeJS.ProcessEnv) {
  return spawnSync(process.execPath, [path.join(root, 'scripts', 'setup.mjs')], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 600_000,
  });
}

describe('setup step', () => {
  it('skips every step when everything is present, printing each with its duration', () => {
    const res = setup({});
    expect(res.status, res.stderr).to.equal(0);
    for (const step of [
      'npm dependencies',
      'native addons',
      'native TensorFlow.js',
      "dp's TensorFlow kernels",
      'Python venv with Ray',
      'Fashion-MNIST',
    ]) {
      expect(res.stdout).to.match(new RegExp(`setup: ${step}\\s+.*\\(\\d+\\.\\d s\\)`));
    }
    expect(res.stdout).to.include('up to date');
    expect(res.stdout).not.to.include('installed (');
  });

  it('names a bad TENSORGUARD_TFJS_VARIANT and the values it accepts', () => {
    const res = setup({ TENSORGUARD_TFJS_VARIANT: 'tpu' });
    expect(res.status).to.equal(1);
    expect(res.stderr).to.include(
      'setup: native TensorFlow.js FAILED: TENSORGUARD_TFJS_VARIANT=tpu is not one of cpu, gpu, auto',
    );
    expect(res.stderr).to.include('what to do: set it to cpu, gpu or auto');
  });

  it('says how to point the project at IDX files when TENSORGUARD_DATA_DIR lacks them', () => {
    const res = setup({ TENSORGUARD_DATA_DIR: '/nonexistent/fashion' });
    expect(res.status).to.equal(1);
    expect(res.stderr).to.include(
      'setup: Fashion-MNIST FAILED: TENSORGUARD_DATA_DIR=/nonexistent/fashion does not hold the Fashion-MNIST IDX files',
    );
    expect(res.stderr).to.include('what to do: point TENSORGUARD_DATA_DIR at a folder with those four files');
  });
});
