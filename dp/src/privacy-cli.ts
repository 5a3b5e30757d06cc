// `tensorguard privacy`: ε of a DP-SGD run, or the noise multiplier for a target ε. The driver's
// CLI calls runPrivacyCommand with the arguments after "privacy" and prints what it returns.
import { calibrateNoiseMultiplier, computeEpsilon } from './calibration.js';
import { DpError } from './errors.js';
import { RdpAccountant } from './accountant.js';
import { gaussianEvent, poissonSampledEvent } from './mechanisms.js';
import type { RdpConversion } from './rdp.js';

export const PRIVACY_USAGE = `usage: tensorguard privacy [options]

Computes ε of DP-SGD with Poisson sampling and Gaussian noise, or (with --target-epsilon) the
noise multiplier that reaches a target ε.

  --sampling-rate Q      Poisson sampling rate in (0, 1]            } give these two,
  --steps T              number of steps (integer >= 1)              }
  --dataset-size N       records in the dataset                     } or these three
  --batch-size B         expected batch size (q = B/N)              } (steps = ceil(E*N/B))
  --epochs E             epochs (> 0)                               }
  --noise-multiplier S   noise std / clip norm (> 0)
  --target-epsilon E     calibrate the noise multiplier instead of giving it
  --delta D              target δ in (0, 1) (required)
  --accountant rdp|pld   default rdp
  --conversion improved|classic   RDP to (ε, δ) conversion, default improved (rdp only)
  --json                 print JSON instead of text
  --help                 print this help
`;

/** What the command returns: print stdout and stderr, exit with exitCode. */
export interface PrivacyCommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

class UsageError extends Error {}

const VALUE_FLAGS = [
  '--sampling-rate',
  '--noise-multiplier',
  '--steps',
  '--delta',
  '--dataset-size',
  '--batch-size',
  '--epochs',
  '--accountant',
  '--conversion',
  '--target-epsilon',
] as const;
type ValueFlag = (typeof VALUE_FLAGS)[number];

function parse(argv: string[]): { values: Map<ValueFlag, string>; json: boolean; help: boolean } {
  const values = new Map<ValueFlag, string>();
  let json = false;
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--json') json = true;
    else if (arg === '--help' || arg === '-h') help = true;
    else {
      const eq = arg.indexOf('=');
      const name = eq > 0 ? arg.slice(0, eq) : arg;
      if (!(VALUE_FLAGS as readonly string[]).includes(name)) {
        throw new UsageError(
          arg.startsWith('-')
            ? `unknown flag ${name}; run "tensorguard privacy --help" for the flags`
            : `unexpected argument "${arg}"; run "tensorguard privacy --help" for the flags`,
        );
      }
      const flag = name as ValueFlag;
      let value: string | undefined;
      if (eq > 0) value = arg.slice(eq + 1);
      else {
        value = argv[i + 1];
        if (value === undefined || value.startsWith('--')) throw new UsageError(`${flag} needs a value`);
        i++;
      }
      if (values.has(flag)) throw new UsageError(`${flag} is given more than once`);
      values.set(flag, value);
    }
  }
  return { values, json, help };
}

function number(
  values: Map<ValueFlag, string>,
  flag: ValueFlag,
  domain: string,
  ok: (x: number) => boolean,
): number | undefined {
  const raw = values.get(flag);
  if (raw === undefined) return undefined;
  const x = raw.trim() === '' ? NaN : Number(raw);
  if (!ok(x)) throw new UsageError(`${flag} must be ${domain}, got "${raw}"`);
  return x;
}

function choice<T extends string>(
  values: Map<ValueFlag, string>,
  flag: ValueFlag,
  allowed: readonly T[],
): T | undefined {
  const raw = values.get(flag);
  if (raw === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new UsageError(`${flag} must be one of: ${allowed.join(', ')} (got "${raw}")`);
  }
  return raw as T;
}

function fmt(x: number): string {
  return Number.isFinite(x) ? String(Number(x.toPrecision(6))) : String(x);
}

/**
 * Runs `tensorguard privacy` with `argv` (the arguments after "privacy"). Usage
 * errors give exitCode 2 and a message on stderr naming the flag and its allowed values; a
 * calibration that cannot reach the target gives exitCode 1.
 */
export function runPrivacyCommand(argv: string[]): PrivacyCommandResult {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
    if (parsed.help) return { exitCode: 0, stdout: PRIVACY_USAGE, stderr: '' };
    const { values, json } = parsed;
    const pos = (x: number): boolean => Number.isFinite(x) && x > 0;
    const posInt = (x: number): boolean => Number.isSafeInteger(x) && x >= 1;
    const accountant = choice(values, '--accountant', ['rdp', 'pld'] as const) ?? 'rdp';
    const conversionFlag = choice(values, '--conversion', ['improved', 'classic'] as const);
    if (conversionFlag !== undefined && accountant !== 'rdp') {
      throw new UsageError('--conversion applies only to --accountant rdp');
    }
    const conversion: RdpConversion = conversionFlag ?? 'improved';
    const delta = number(values, '--delta', 'a number in (0, 1)', (x) => x > 0 && x < 1);
    let samplingRate = number(values, '--sampling-rate', 'a number in (0, 1]', (x) => x > 0 && x <= 1);
    let steps = number(values, '--steps', 'an integer >= 1', posInt);
    const datasetSize = number(values, '--dataset-size', 'an integer >= 1', posInt);
    const batchSize = number(values, '--batch-size', 'an integer >= 1', posInt);
    const epochs = number(values, '--epochs', 'a number > 0', pos);
    const noiseMultiplier = number(values, '--noise-multiplier', 'a number > 0', pos);
    const targetEpsilon = number(values, '--target-epsilon', 'a number > 0', pos);
    if (delta === undefined) throw new UsageError('--delta is required (e.g. --delta 1e-5)');
    const direct = samplingRate !== undefined || steps !== undefined;
    const fromData = datasetSize !== undefined || batchSize !== undefined || epochs !== undefined;
    if (direct && fromData) {
      throw new UsageError(
        '--sampling-rate/--steps cannot be combined with --dataset-size/--batch-size/--epochs; give one set',
      );
    }
    if (fromData) {
      if (datasetSize === undefined || batchSize === undefined || epochs === undefined) {
        throw new UsageError('--dataset-size, --batch-size and --epochs must be given together');
      }
      if (batchSize > datasetSize) {
        throw new UsageError(`--batch-size (${batchSize}) must not exceed --dataset-size (${datasetSize})`);
      }
      samplingRate = batchSize / datasetSize;
      steps = Math.ceil((epochs * datasetSize) / batchSize);
    }
    if (samplingRate === undefined || steps === undefined) {
      throw new UsageError(
        'give either --sampling-rate and --steps, or --dataset-size, --batch-size and --epochs',
      );
    }
    if ((noiseMultiplier === undefined) === (targetEpsilon === undefined)) {
      throw new UsageError('give exactly one of --noise-multiplier and --target-epsilon');
    }
    const setting = { samplingRate, steps, delta, accountant, conversion } as const;
    const inputs: Record<string, number | string> = {
      sampling_rate: samplingRate,
      steps,
      delta,
      accountant,
      ...(accountant === 'rdp' ? { conversion } : {}),
      ...(datasetSize !== undefined
        ? { dataset_size: datasetSize, batch_size: batchSize!, epochs: epochs! }
        : {}),
    };
    let sigma: number;
    let epsilon: number;
    if (targetEpsilon !== undefined) {
      sigma = calibrateNoiseMultiplier({ ...setting, targetEpsilon });
      epsilon = computeEpsilon({ ...setting, noiseMultiplier: sigma });
      inputs['target_epsilon'] = targetEpsilon;
    } else {
      sigma = noiseMultiplier!;
      epsilon = computeEpsilon({ ...setting, noiseMultiplier: sigma });
    }
    let order: number | undefined;
    if (accountant === 'rdp') {
      order = new RdpAccountant()
        .compose(poissonSampledEvent(samplingRate, gaussianEvent(sigma)), steps)
        .epsilonAndOrder(delta, conversion).order;
    }
    if (json) {
      const out = {
        epsilon,
        noise_multiplier: sigma,
        ...inputs,
        ...(order !== undefined ? { optimal_order: order } : {}),
      };
      return { exitCode: 0, stdout: JSON.stringify(out) + '\n', stderr: '' };
    }
    const how = accountant === 'rdp' ? `rdp accountant, ${conversion} conversion` : 'pld accountant';
    const lines = [
      targetEpsilon !== undefined
        ? `noise multiplier σ = ${fmt(sigma)} reaches ε = ${fmt(epsilon)} (target ${targetEpsilon}) at δ = ${delta}`
        : `ε = ${fmt(epsilon)} at δ = ${delta}`,
      `  ${how}; sampling rate q = ${fmt(samplingRate)}, noise multiplier σ = ${fmt(sigma)}, steps = ${steps}` +
        (order !== undefined ? `, optimal RDP order ${order}` : ''),
    ];
    return { exitCode: 0, stdout: lines.join('\n') + '\n', stderr: '' };
  } catch (err) {
    if (err instanceof UsageError) {
      return { exitCode: 2, stdout: '', stderr: `tensorguard privacy: ${err.message}\n` };
    }
    if (err instanceof DpError) {
      return { exitCode: 1, stdout: '', stderr: `tensorguard privacy: ${err.message}\n` };
    }
    throw err;
  }
}
