// The client side of GetJobArtifact: downloads a finished job's artifact into a folder and checks
// every file's size and SHA-256 against its header before anything is put in place. Files are
// written under temporary names (0600) and renamed only when the whole stream arrived intact, so
// a mismatch, a cut stream or an error leaves no partial file behind.
import type * as grpc from '@grpc/grpc-js';
import { type trainingService as pb, type TrainingServiceClient } from '@tensorguard/proto';
import crypto from 'node:crypto';
import fs from 'node:fs';
import nodePath from 'node:path';
import { artifactKindToProto, artifactPartFromProto } from '../edge/convert.js';
import type { ArtifactFile, ArtifactKind } from '../jobs/domain.js';

/** The server sent bytes that do not match what it announced; nothing was written. */
export class ArtifactIntegrityError extends Error {
  override name = 'ArtifactIntegrityError';
  constructor(
    message: string,
    /** The file name the server announced. */
    readonly file: string,
  ) {
    super(message);
  }
}

export interface DownloadArtifactOptions {
  jobId: string;
  kind: ArtifactKind;
  /** Folder the files go to (created when missing); files of the same names are replaced. */
  outDir: string;
  /** Call metadata: `authorization: Bearer <key>`. */
  metadata: grpc.Metadata;
  /** Deadline for the whole download, milliseconds from now (default 600000, 10 minutes). */
  timeoutMs?: number;
  /** Cancels the download (the call is cancelled, nothing is written). */
  signal?: AbortSignal;
}

/** A file that arrived intact: its header and where it now is. */
export interface DownloadedFile extends ArtifactFile {
  path: string;
}

/** What a server may name a file: one plain path component. */
const SAFE_NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$/;

interface Pending {
  file: ArtifactFile;
  tmp: string;
  fd: number;
  hash: crypto.Hash;
  received: number;
}

/**
 * Downloads one artifact of a job and returns its files in the order the server sent them.
 * Rejects with the call's grpc ServiceError (NOT_FOUND, FAILED_PRECONDITION,
 * RESOURCE_EXHAUSTED, ...) as the server sent it, or with ArtifactIntegrityError when a file's
 * size or SHA-256 differs from its header, a file name is not a plain name, or bytes arrive
 * without a header. In every failure no file is left in `outDir`.
 */
export function downloadJobArtifact(
  client: InstanceType<typeof TrainingServiceClient>,
  o: DownloadArtifactOptions,
): Promise<DownloadedFile[]> {
  fs.mkdirSync(o.outDir, { recursive: true });
  const done: Pending[] = [];
  let current: Pending | null = null;
  const tag = `${process.pid}-${crypto.randomBytes(4).toString('hex')}`;

  const discard = () => {
    for (const p of [...done, ...(current ? [current] : [])]) {
      try {
        fs.closeSync(p.fd);
      } catch {
        // closed already
      }
      fs.rmSync(p.tmp, { force: true });
    }
    done.length = 0;
    current = null;
  };
  const finish = (p: Pending) => {
    fs.closeSync(p.fd);
    p.fd = -1;
    const sha = p.hash.digest('hex');
    if (p.received !== p.file.sizeBytes) {
      throw new ArtifactIntegrityError(
        `${p.file.name}: received ${p.received} bytes, the server announced ${p.file.sizeBytes}; nothing was saved`,
        p.file.name,
      );
    }
    if (sha !== p.file.sha256) {
      throw new ArtifactIntegrityError(
        `${p.file.name}: SHA-256 ${sha} does not match the server's ${p.file.sha256}; nothing was saved`,
        p.file.name,
      );
    }
    done.push(p);
  };

  return new Promise<DownloadedFile[]>((resolve, reject) => {
    const stream = client.getJobArtifact({ jobId: o.jobId, kind: artifactKindToProto(o.kind) }, o.metadata, {
      deadline: Date.now() + (o.timeoutMs ?? 600_000),
    });
    let failed = false;
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      o.signal?.removeEventListener('abort', onAbort);
      stream.cancel();
      discard();
      reject(err);
    };
    const onAbort = () => fail(o.signal!.reason ?? new Error('download cancelled'));

    stream.on('data', (m: pb.GetJobArtifactResponse) => {
      if (failed) return;
      try {
        const part = artifactPartFromProto(m);
        if (part.type === 'file') {
          if (current) finish(current);
          current = null;
          const f = part.file;
          if (!SAFE_NAME_RE.test(f.name) || [...done].some((d) => d.file.name === f.name)) {
            throw new ArtifactIntegrityError(
              `the server named a file "${f.name.slice(0, 80)}", not a new plain file name; nothing was saved`,
              f.name,
            );
          }
          if (!/^[0-9a-f]{64}$/.test(f.sha256)) {
            throw new ArtifactIntegrityError(`${f.name}: the server sent no valid SHA-256`, f.name);
          }
          const tmp = nodePath.join(o.outDir, `.${f.name}.part-${tag}`);
          const fd = fs.openSync(tmp, 'wx', 0o600);
          current = { file: f, tmp, fd, hash: crypto.createHash('sha256'), received: 0 };
        } else {
          if (!current) throw new ArtifactIntegrityError('the server sent bytes before a file header', '');
          const p: Pending = current;
          p.received += part.data.byteLength;
          if (p.received > p.file.sizeBytes) {
            throw new ArtifactIntegrityError(
              `${p.file.name}: more bytes than the ${p.file.sizeBytes} the server announced; nothing was saved`,
              p.file.name,
            );
          }
          p.hash.update(part.data);
          for (let off = 0; off < part.data.byteLength;)
            off += fs.writeSync(p.fd, part.data, off, part.data.byteLength - off);
        }
      } catch (err) {
        fail(err);
      }
    });
    stream.on('error', (err) => fail(err));
    stream.on('end', () => {
      if (failed) return;
      try {
        if (current) finish(current);
        current = null;
        const out: DownloadedFile[] = [];
        for (const p of done) {
          const dest = nodePath.join(o.outDir, p.file.name);
          fs.renameSync(p.tmp, dest);
          out.push({ ...p.file, path: dest });
        }
        done.length = 0;
        o.signal?.removeEventListener('abort', onAbort);
        resolve(out);
      } catch (err) {
        fail(err);
      }
    });
    // After the listeners: cancelling emits the stream's 'error' (CANCELLED), which fail() ignores.
    if (o.signal?.aborted) onAbort();
    else o.signal?.addEventListener('abort', onAbort, { once: true });
  });
}
