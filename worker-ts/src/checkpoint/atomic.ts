// Crash-safe file replacement. A file is written to a temporary name in the same directory,
// fsynced, renamed over the target (rename is atomic on POSIX file systems) and the directory is
// fsynced so the rename itself is durable. A crash at any instant leaves either the old or the new
// file, never a mix; temporaries left behind by a crash start with '.tmp-' and are ignored.
//
// Files are created 0600 and directories 0700: checkpoints and ledgers describe a private model
// and what was released about private data, so only the job's user reads them.
import fs from 'node:fs';
import path from 'node:path';
import { CheckpointError } from './errors.js';

export const PRIVATE_FILE_MODE = 0o600;
export const PRIVATE_DIR_MODE = 0o700;

export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Creates `dir` (and parents) 0700 when missing. */
export function mkdirPrivate(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
}

/**
 * Writes all of `data` at the fd's position. writeSync may write fewer bytes than asked (a full
 * disk can do so without an error); a short write that makes no progress is an error, never
 * success.
 */
export function writeFully(fd: number, data: Uint8Array, file: string): void {
  let off = 0;
  while (off < data.length) {
    const n = fs.writeSync(fd, data, off, data.length - off);
    if (n <= 0) {
      throw new CheckpointError(
        `${file}: short write (${off} of ${data.length} bytes written); is the disk full?`,
        file,
      );
    }
    off += n;
  }
}

function toBytes(data: Uint8Array | string): Uint8Array {
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
}

/** Turns an fs error into a CheckpointError that names the path and says what to do. */
export function writeError(file: string, err: unknown): CheckpointError {
  if (err instanceof CheckpointError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  const hint =
    code === 'ENOSPC' || code === 'EDQUOT'
      ? ' (no space left on the device: free space or move checkpoint.dir)'
      : '';
  return new CheckpointError(`${file}: cannot write: ${(err as Error).message}${hint}`, file, { cause: err });
}

/** Writes `data` to `file` durably and atomically (mode 0600). Removes its temporary on failure. */
export function writeFileAtomic(file: string, data: Uint8Array | string): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.tmp-${path.basename(file)}-${process.pid}-${Date.now()}`);
  try {
    const fd = fs.openSync(tmp, 'w', PRIVATE_FILE_MODE);
    try {
      writeFully(fd, toBytes(data), tmp);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
    fsyncDir(dir);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw writeError(file, err);
  }
}

/**
 * Appends one line durably: every byte written, the file fsynced, and the directory fsynced when
 * the append created the file (so the file's existence is durable too). Throws CheckpointError
 * naming the file on any failure; a failure mid-append can leave a torn last line only, which
 * readers must treat as released (see coordinator/ledger.ts).
 */
export function appendLineDurable(file: string, line: string): void {
  try {
    const created = !fs.existsSync(file);
    const fd = fs.openSync(file, 'a', PRIVATE_FILE_MODE);
    try {
      writeFully(fd, Buffer.from(line.endsWith('\n') ? line : line + '\n', 'utf8'), file);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (created) fsyncDir(path.dirname(file));
  } catch (err) {
    throw writeError(file, err);
  }
}
