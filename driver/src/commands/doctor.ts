// `tensorguard doctor`: is this machine ready to train? Each check runs in a child process so a
// broken native library is reported, not fatal.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { repoRoot, venvPython } from '../paths.js';
import { type Command, UsageError } from './types.js';

export interface DoctorReport {
  /** The tfjs backend that training uses; must be "tensorflow" (native libtensorflow). */
  backend: string | null;
  tfjsPackage: string;
  tensorflowVersion: string | null;
  tfjsVersion: string | null;
  gpu: { visible: boolean; devices: string[] };
  node: string;
  python: string | null;
  ray: string | null;
  dataset: { dir: string; found: boolean; files: string[] };
  /**
   * Secure aggregation's native mask kernel: the instruction set it runs on ("vaes", "aesni"), or
   * null where it is not built or cannot load (masking then runs on node:crypto + WebAssembly,
   * several times slower; not a problem, setup builds it wherever a C compiler exists).
   */
  maskKernel: string | null;
  /**
   * dp's own TensorFlow CPU kernels (dp/native, for per-sample conv gradients): the ops they
   * register, or null where they are not built or cannot load (the clipping engine then uses
   * TensorFlow ops: same results, a slower DP step on convolutions).
   */
  dpKernels: string[] | null;
  problems: string[];
}

const DATA_FILES = [
  'train-images-idx3-ubyte',
  'train-labels-idx1-ubyte',
  't10k-images-idx3-ubyte',
  't10k-labels-idx1-ubyte',
];

function probeTfjs(
  root: string,
  pkg: string,
): { backend: string; tf: string; tfjs: string } | { error: string } {
  const script = `const tf=require(${JSON.stringify(pkg)});const b=tf.backend();process.stdout.write(JSON.stringify({backend:tf.getBackend(),tf:(b.binding&&b.binding.TF_Version)||null,tfjs:tf.version['tfjs-core']}))`;
  const res = spawnSync(process.execPath, ['-e', script], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '3' },
    timeout: 60_000,
  });
  if (res.status !== 0) {
    const msg =
      (res.stderr || String(res.error ?? '')).split('\n').find((l) => /Error/.test(l)) ??
      res.stderr.trim().split('\n')[0];
    return { error: msg ?? `exit ${res.status}` };
  }
  return JSON.parse(res.stdout) as { backend: string; tf: string; tfjs: string };
}

function probeMaskKernel(root: string): string | null {
  const file = path.join(root, 'secure-agg', 'build', 'mask_kernel.node');
  if (!fs.existsSync(file)) return null;
  const res = spawnSync(process.execPath, ['-p', `require(${JSON.stringify(file)}).path()`], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  const p = res.stdout?.trim();
  return res.status === 0 && p && p !== 'none' ? p : null;
}

function probeDpKernels(root: string, pkg: string): string[] | null {
  const file = path.join(root, 'dp', 'build', 'tg_kernels.node');
  if (!fs.existsSync(file)) return null;
  const script = `require(${JSON.stringify(pkg)});process.stdout.write(require(${JSON.stringify(file)}).ops.join(','))`;
  const res = spawnSync(process.execPath, ['-e', script], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '3' },
    timeout: 60_000,
  });
  return res.status === 0 && res.stdout ? res.stdout.split(',') : null;
}

function gpus(): string[] {
  const res = spawnSync('nvidia-smi', ['-L'], { encoding: 'utf8', timeout: 10_000 });
  return res.status === 0 ? res.stdout.split('\n').filter((l) => l.startsWith('GPU ')) : [];
}

/** Collects the report; `problems` lists what is missing, each with what to do. */
export function doctor(env: NodeJS.ProcessEnv = process.env): DoctorReport {
  const root = repoRoot(env);
  const problems: string[] = [];
  const devices = gpus();
  // As dp/src/tfjs/tf.ts decides: the variable when it says cpu or gpu, else what setup built.
  let variant = (env.TENSORGUARD_TFJS_VARIANT ?? 'auto').toLowerCase();
  if (variant !== 'cpu' && variant !== 'gpu') {
    try {
      variant = fs.readFileSync(path.join(root, '.cache', 'setup', 'tfjs-variant'), 'utf8').trim();
    } catch {
      variant = devices.length > 0 ? 'gpu' : 'cpu';
    }
  }
  const useGpu = variant === 'gpu';
  const tfjsPackage = useGpu ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node';
  const tf = probeTfjs(root, tfjsPackage);
  if ('error' in tf) {
    problems.push(`${tfjsPackage} does not load (${tf.error}): run \`npm run setup\``);
  } else if (tf.backend !== 'tensorflow') {
    problems.push(`tfjs backend is "${tf.backend}", not the native "tensorflow": run \`npm run setup\``);
  }

  const py = venvPython(root);
  let python: string | null = null;
  let ray: string | null = null;
  if (fs.existsSync(py)) {
    const res = spawnSync(py, ['-c', 'import sys, ray; print(sys.version.split()[0], ray.__version__)'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    if (res.status === 0) [python = null, ray = null] = res.stdout.trim().split(' ');
    else problems.push(`Ray does not import in ${py}: run \`npm run setup\``);
  } else {
    problems.push(`${py} is missing: run \`npm run setup\``);
  }

  const dir = env.TENSORGUARD_DATA_DIR ?? '/usr/share/datasets/fashion-mnist';
  const files = DATA_FILES.flatMap((f) =>
    [f, `${f}.gz`]
      .filter((c) => fs.existsSync(path.join(dir, c)))
      .slice(0, 1)
      .map((c) => path.join(dir, c)),
  );
  const found = files.length === DATA_FILES.length;
  if (!found) {
    problems.push(
      `Fashion-MNIST not found in ${dir}: \`apt-get install dataset-fashion-mnist\` as root, or set TENSORGUARD_DATA_DIR to a folder with the IDX files`,
    );
  }

  return {
    backend: 'error' in tf ? null : tf.backend,
    tfjsPackage,
    tensorflowVersion: 'error' in tf ? null : tf.tf,
    tfjsVersion: 'error' in tf ? null : tf.tfjs,
    gpu: { visible: devices.length > 0, devices },
    node: process.versions.node,
    python,
    ray,
    dataset: { dir, found, files },
    maskKernel: probeMaskKernel(root),
    dpKernels: 'error' in tf ? null : probeDpKernels(root, tfjsPackage),
    problems,
  };
}

export function formatDoctor(r: DoctorReport): string {
  const ok = (b: boolean) => (b ? 'ok ' : 'NO ');
  const lines = [
    `${ok(r.backend === 'tensorflow')} tfjs backend      ${r.backend ?? 'unavailable'} (${r.tfjsPackage} ${r.tfjsVersion ?? '?'})`,
    `${ok(r.tensorflowVersion !== null)} TensorFlow        ${r.tensorflowVersion ?? 'unavailable'}`,
    `    GPU               ${r.gpu.visible ? r.gpu.devices.join('; ') : 'none visible (training runs on CPU)'}`,
    `ok  Node.js           ${r.node}`,
    `${ok(r.python !== null)} Python (.venv)    ${r.python ?? 'unavailable'}`,
    `${ok(r.ray !== null)} Ray               ${r.ray ?? 'unavailable'}`,
    `${ok(r.dataset.found)} Fashion-MNIST     ${r.dataset.dir}`,
    r.maskKernel !== null
      ? `ok  mask kernel       native (${r.maskKernel})`
      : '    mask kernel       not built: masking uses node:crypto + WebAssembly (setup builds it where a C compiler exists)',
    r.dpKernels !== null
      ? `ok  dp kernels        ${r.dpKernels.join(', ')}`
      : '    dp kernels        not built: per-sample conv gradients use TensorFlow ops (setup builds them where a C++ compiler exists)',
  ];
  if (r.problems.length) lines.push('', 'problems:', ...r.problems.map((p) => `  - ${p}`));
  return lines.join('\n');
}

export const command: Command = {
  name: 'doctor',
  summary: 'check the native TensorFlow backend, GPU, Node/Python/Ray and the dataset',
  usage: [
    'usage: tensorguard doctor [--json]',
    '',
    'Reports the tfjs backend in use (must be "tensorflow", the native one) and its TensorFlow',
    'version, whether a GPU is visible, Node/Python/Ray versions and where the dataset is.',
    'Exits 1 and lists what to do when something is missing.',
    '',
    '  --json   print one JSON object (keys: backend, tensorflowVersion, gpu, node, python, ray, dataset, maskKernel, dpKernels, problems)',
  ].join('\n'),
  async run(args, io) {
    const unknown = args.filter((a) => a !== '--json');
    if (unknown.length) throw new UsageError(`unknown option ${unknown[0]}`);
    const report = doctor(io.env);
    io.stdout((args.includes('--json') ? JSON.stringify(report, null, 2) : formatDoctor(report)) + '\n');
    return report.problems.length ? 1 : 0;
  },
};
