// The checkpoint directory: one sub-directory per saved round plus a LATEST pointer.
//
//   <dir>/round-000012/model.safetensors      trainable + frozen tensors, by parameter name
//   <dir>/round-000012/optimizer.safetensors  optimizer slots over the flat trainable vector
//   <dir>/round-000012/manifest.json          round, fingerprints, DP parameters, accountant state,
//                                             SHA-256 of the two files above (written last)
//   <dir>/LATEST                              "round-000012\n", replaced atomically
//   <dir>/privacy-ledger.jsonl                write-ahead privacy ledger (coordinator/ledger.ts)
//
// Saving builds the round directory under a temporary name, fsyncs every file and the directory,
// renames it into place, fsyncs the parent, and only then replaces LATEST. Loading reads LATEST,
// checks the manifest, the files' hashes and the base-model fingerprint, and never writes: a bad
// checkpoint raises CheckpointError and leaves every file as it was.
import fs from 'node:fs';
import path from 'node:path';
import {
  PRIVATE_DIR_MODE,
  PRIVATE_FILE_MODE,
  fsyncDir,
  mkdirPrivate,
  writeError,
  writeFileAtomic,
  writeFully,
} from './atomic.js';
import { CheckpointError } from './errors.js';
import { parseManifest, sha256Hex, type Manifest } from './manifest.js';
import { decodeSafetensors, encodeSafetensors, type NamedTensor } from './safetensors.js';

export interface CheckpointContents {
  manifest: Omit<Manifest, 'files' | 'schemaVersion' | 'createdAt'>;
  model: Record<string, NamedTensor>;
  optimizer: Record<string, NamedTensor>;
}

export interface LoadedCheckpoint {
  dir: string;
  manifest: Manifest;
  model: Record<string, NamedTensor>;
  optimizer: Record<string, NamedTensor>;
}

export function roundDirName(round: number): string {
  return `round-${String(round).padStart(6, '0')}`;
}

/**
 * Saves a checkpoint atomically and returns its directory. Keeps the newest `keep` (default 2).
 * Throws CheckpointError naming the path when a write fails (a full disk) or a tensor holds a
 * non-finite value; then the temporary directory is removed and the previous checkpoint, and
 * LATEST pointing at it, are untouched.
 */
export function saveCheckpoint(dir: string, contents: CheckpointContents, keep = 2): string {
  for (const [group, tensors] of [
    ['model', contents.model],
    ['optimizer', contents.optimizer],
  ] as const) {
    for (const [name, t] of Object.entries(tensors)) {
      if (!(t.data as ArrayLike<number | bigint>) || typeof (t.data as ArrayLike<unknown>)[0] === 'bigint')
        continue;
      const data = t.data as ArrayLike<number>;
      for (let i = 0; i < data.length; i++) {
        if (!Number.isFinite(data[i])) {
          throw new CheckpointError(
            `${dir}: refusing to checkpoint round ${contents.manifest.round}: ${group} tensor '${name}' has a non-finite value at index ${i}`,
            dir,
          );
        }
      }
    }
  }
  mkdirPrivate(dir);
  const name = roundDirName(contents.manifest.round);
  const final = path.join(dir, name);
  const tmp = path.join(dir, `.tmp-${name}-${process.pid}-${Date.now()}`);
  let current = tmp;
  try {
    fs.mkdirSync(tmp, { mode: PRIVATE_DIR_MODE });
    const files: Record<string, string> = {};
    const write = (file: string, data: Uint8Array | string) => {
      current = path.join(tmp, file);
      const fd = fs.openSync(current, 'w', PRIVATE_FILE_MODE);
      try {
        writeFully(fd, typeof data === 'string' ? Buffer.from(data) : data, current);
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    };
    const meta = { format: 'tensorguard', round: String(contents.manifest.round) };
    for (const [file, tensors] of [
      ['model.safetensors', contents.model],
      ['optimizer.safetensors', contents.optimizer],
    ] as const) {
      const bytes = encodeSafetensors(tensors, meta);
      files[file] = sha256Hex(bytes);
      write(file, bytes);
    }
    const manifest: Manifest = {
      schemaVersion: 1,
      createdAt: new Date().toISOString(),
      ...contents.manifest,
      files,
    };
    write('manifest.json', JSON.stringify(manifest, null, 2) + '\n');
    current = tmp;
    fsyncDir(tmp);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw writeError(current, err);
  }
  // A directory of this name can only be a complete earlier save of the same round that crashed
  // before LATEST moved; LATEST does not point at it, so replacing it loses nothing.
  if (fs.existsSync(final)) fs.rmSync(final, { recursive: true, force: true });
  fs.renameSync(tmp, final);
  fsyncDir(dir);
  writeFileAtomic(path.join(dir, 'LATEST'), name + '\n');
  prune(dir, name, keep);
  return final;
}

function prune(dir: string, current: string, keep: number): void {
  const rounds = fs
    .readdirSync(dir)
    .filter((f) => /^round-\d{6}$/.test(f))
    .sort();
  const drop = rounds.slice(0, Math.max(0, rounds.length - keep)).filter((r) => r !== current);
  for (const r of drop) fs.rmSync(path.join(dir, r), { recursive: true, force: true });
}

/** The directory LATEST points to, or null when `dir` has no checkpoint yet. */
export function latestCheckpointDir(dir: string): string | null {
  const pointer = path.join(dir, 'LATEST');
  if (!fs.existsSync(pointer)) return null;
  const name = fs.readFileSync(pointer, 'utf8').trim();
  if (!/^round-\d{6}$/.test(name)) {
    throw new CheckpointError(`${pointer}: does not name a checkpoint ('${name.slice(0, 40)}')`, pointer);
  }
  return path.join(dir, name);
}

export interface LoadExpectations {
  /** Refuse a checkpoint of another base model / architecture. */
  baseModelFingerprint: string;
}

/** Loads and verifies one checkpoint directory. Never modifies anything on disk. */
export function loadCheckpoint(cdir: string, expect: LoadExpectations): LoadedCheckpoint {
  const manifestFile = path.join(cdir, 'manifest.json');
  if (!fs.existsSync(manifestFile)) {
    throw new CheckpointError(`${cdir}: no manifest.json (incomplete or not a checkpoint)`, cdir);
  }
  const manifest = parseManifest(fs.readFileSync(manifestFile, 'utf8'), manifestFile);
  if (manifest.baseModelFingerprint !== expect.baseModelFingerprint) {
    throw new CheckpointError(
      `${cdir}: checkpoint was trained from a different base model (fingerprint ${manifest.baseModelFingerprint.slice(0, 12)}…, this job's model is ${expect.baseModelFingerprint.slice(0, 12)}…); point checkpoint.dir at a fresh directory or use the matching model`,
      cdir,
    );
  }
  const decoded: Record<string, Record<string, NamedTensor>> = {};
  for (const file of ['model.safetensors', 'optimizer.safetensors']) {
    const p = path.join(cdir, file);
    const want = manifest.files[file];
    if (!fs.existsSync(p) || want === undefined)
      throw new CheckpointError(`${p}: missing from the checkpoint`, p);
    const bytes = fs.readFileSync(p);
    const got = sha256Hex(bytes);
    if (got !== want) {
      throw new CheckpointError(
        `${p}: corrupt checkpoint file (SHA-256 ${got.slice(0, 12)}… does not match the manifest's ${want.slice(0, 12)}…)`,
        p,
      );
    }
    decoded[file] = decodeSafetensors(bytes, p).tensors;
  }
  const model = decoded['model.safetensors']!;
  for (const t of manifest.tensors) {
    const have = model[t.name];
    if (!have || have.shape.join(',') !== t.shape.join(',')) {
      throw new CheckpointError(`${cdir}: tensor '${t.name}' is missing or has the wrong shape`, cdir);
    }
  }
  return { dir: cdir, manifest, model, optimizer: decoded['optimizer.safetensors']! };
}

/** Called when the latest checkpoint is unusable and an older intact one is used instead. */
export type FallbackNotice = (message: string, detail: Record<string, unknown>) => void;

/**
 * Loads the checkpoint LATEST points to, or returns null when there is none. When that one is
 * corrupt (a hash that does not match its manifest, a missing file), falls back to the newest
 * older round directory that verifies, and calls `notice` saying so; LATEST is not rewritten
 * (loading never writes). A checkpoint of another base model is never skipped: that error is
 * thrown, as is the first error when no older checkpoint verifies.
 */
export function loadLatestCheckpoint(
  dir: string,
  expect: LoadExpectations,
  notice?: FallbackNotice,
): LoadedCheckpoint | null {
  const cdir = latestCheckpointDir(dir);
  if (cdir === null) return null;
  try {
    return loadCheckpoint(cdir, expect);
  } catch (err) {
    if (!(err instanceof CheckpointError) || /different base model/.test(err.message)) throw err;
    const older = fs
      .readdirSync(dir)
      .filter((f) => /^round-\d{6}$/.test(f) && path.join(dir, f) < cdir)
      .sort()
      .reverse();
    for (const name of older) {
      try {
        const ck = loadCheckpoint(path.join(dir, name), expect);
        notice?.(
          `latest checkpoint ${cdir} is unusable (${err.message}); resuming from the previous intact checkpoint ${ck.dir}`,
          {
            corrupt: cdir,
            using: ck.dir,
          },
        );
        return ck;
      } catch {
        // try the next older one
      }
    }
    throw err;
  }
}
