import { expect } from 'chai';
import { runPrivacyCommand } from './privacy-cli.js';

const MNIST = [
  '--dataset-size',
  '60000',
  '--batch-size',
  '256',
  '--epochs',
  '60',
  '--noise-multiplier',
  '1.1',
  '--delta',
  '1e-5',
];

function usage(argv: string[]): string {
  const r = runPrivacyCommand(argv);
  expect(r.exitCode, r.stderr).to.equal(2);
  expect(r.stdout).to.equal('');
  return r.stderr;
}

describe('tensorguard privacy', () => {
  it('prints ε for the MNIST tutorial setting (q = B/N, steps = ceil(E·N/B))', () => {
    const r = runPrivacyCommand(MNIST);
    expect(r.exitCode).to.equal(0);
    expect(r.stdout).to.equal(
      'ε = 2.59666 at δ = 0.00001\n' +
        '  rdp accountant, improved conversion; sampling rate q = 0.00426667, noise multiplier σ = 1.1, steps = 14063, optimal RDP order 8.1\n',
    );
  });

  it('--json carries ε and the inputs; classic conversion gives 3.01', () => {
    const out = JSON.parse(
      runPrivacyCommand([...MNIST, '--conversion', 'classic', '--json']).stdout,
    ) as Record<string, unknown>;
    expect((out['epsilon'] as number).toFixed(2)).to.equal('3.01');
    expect(out).to.include({
      noise_multiplier: 1.1,
      steps: 14063,
      delta: 1e-5,
      accountant: 'rdp',
      conversion: 'classic',
      dataset_size: 60000,
      batch_size: 256,
      epochs: 60,
    });
    expect(out['sampling_rate']).to.equal(256 / 60000);
  });

  it('--target-epsilon calibrates the noise multiplier', () => {
    const r = runPrivacyCommand([
      '--sampling-rate',
      '0.01',
      '--steps',
      '1000',
      '--target-epsilon',
      '2',
      '--delta',
      '1e-5',
      '--json',
    ]);
    const out = JSON.parse(r.stdout) as { epsilon: number; noise_multiplier: number; target_epsilon: number };
    expect(out.target_epsilon).to.equal(2);
    expect(out.epsilon).to.be.at.most(2).and.greaterThan(1.99);
    expect(out.noise_multiplier).to.be.closeTo(1.0223, 1e-3);
  });

  it('--accountant pld', () => {
    const r = runPrivacyCommand([
      '--sampling-rate',
      '0.01',
      '--steps',
      '100',
      '--noise-multiplier',
      '2',
      '--delta',
      '1e-5',
      '--accountant',
      'pld',
      '--json',
    ]);
    const out = JSON.parse(r.stdout) as { epsilon: number; accountant: string };
    expect(out.accountant).to.equal('pld');
    expect(out.epsilon).to.be.closeTo(0.1898, 1e-3); // dp_accounting: 0.18980
  });

  it('--help', () => {
    const r = runPrivacyCommand(['--help']);
    expect(r.exitCode).to.equal(0);
    expect(r.stdout).to.match(/^usage: tensorguard privacy/);
  });

  it('bad arguments: exit code 2 and a message naming the flag and the allowed values', () => {
    const p = 'tensorguard privacy: ';
    expect(usage([...MNIST, '--accountant', 'moments'])).to.equal(
      `${p}--accountant must be one of: rdp, pld (got "moments")\n`,
    );
    expect(usage([...MNIST, '--conversion', 'exact'])).to.equal(
      `${p}--conversion must be one of: improved, classic (got "exact")\n`,
    );
    expect(usage([...MNIST, '--accountant', 'pld', '--conversion', 'classic'])).to.equal(
      `${p}--conversion applies only to --accountant rdp\n`,
    );
    expect(
      usage(['--sampling-rate', '1.5', '--steps', '3', '--noise-multiplier', '1', '--delta', '1e-5']),
    ).to.equal(`${p}--sampling-rate must be a number in (0, 1], got "1.5"\n`);
    expect(
      usage(['--sampling-rate', '0.1', '--steps', '2.5', '--noise-multiplier', '1', '--delta', '1e-5']),
    ).to.equal(`${p}--steps must be an integer >= 1, got "2.5"\n`);
    expect(
      usage(['--sampling-rate', '0.1', '--steps', '3', '--noise-multiplier', '1', '--delta', 'x']),
    ).to.equal(`${p}--delta must be a number in (0, 1), got "x"\n`);
    expect(usage(['--sampling-rate', '0.1', '--steps', '3', '--noise-multiplier', '1'])).to.equal(
      `${p}--delta is required (e.g. --delta 1e-5)\n`,
    );
    expect(usage(['--sampling-rate', '0.1', '--steps', '3', '--delta', '1e-5'])).to.equal(
      `${p}give exactly one of --noise-multiplier and --target-epsilon\n`,
    );
    expect(usage(['--sampling-rate', '0.1', '--noise-multiplier', '1', '--delta', '1e-5'])).to.equal(
      `${p}give either --sampling-rate and --steps, or --dataset-size, --batch-size and --epochs\n`,
    );
    expect(usage([...MNIST, '--steps', '4'])).to.equal(
      `${p}--sampling-rate/--steps cannot be combined with --dataset-size/--batch-size/--epochs; give one set\n`,
    );
    expect(
      usage(['--dataset-size', '100', '--batch-size', '10', '--noise-multiplier', '1', '--delta', '1e-5']),
    ).to.equal(`${p}--dataset-size, --batch-size and --epochs must be given together\n`);
    expect(
      usage([
        '--dataset-size',
        '10',
        '--batch-size',
        '100',
        '--epochs',
        '1',
        '--noise-multiplier',
        '1',
        '--delta',
        '1e-5',
      ]),
    ).to.equal(`${p}--batch-size (100) must not exceed --dataset-size (10)\n`);
    expect(usage([...MNIST, '--sigma', '2'])).to.equal(
      `${p}unknown flag --sigma; run "tensorguard privacy --help" for the flags\n`,
    );
    expect(usage([...MNIST, '--delta'])).to.equal(`${p}--delta needs a value\n`);
    expect(usage([...MNIST, '--delta', '1e-6'])).to.equal(`${p}--delta is given more than once\n`);
  });

  it('a target no noise can reach exits 1 with what to change', () => {
    const r = runPrivacyCommand([
      '--sampling-rate',
      '1',
      '--steps',
      '100000000',
      '--target-epsilon',
      '0.01',
      '--delta',
      '1e-5',
    ]);
    expect(r.exitCode).to.equal(1);
    expect(r.stderr).to.match(
      /no noise multiplier up to 1e4 gives ε <= 0.01 .*lower the steps or the sampling rate/,
    );
  });
});
