// What a finished job produced, read back for GetJobArtifact: the model of its final checkpoint,
// its PEFT adapter, its HTML report, its metrics and its privacy report. Files are read only from
// the job's own state directory (`<stateRoot>/<tenant>/jobs/<job id>/`, see confine.ts), after
// every symlink is resolved, and each is opened once: the SHA-256 announced in a file's header
// is computed from the same open file whose bytes are then streamed, so an atomic replacement
// (write + rename) on disk meanwhile cannot mix two versions.
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import nodePath from 'node:path';
import {
  ADAPTER_DIR,
  JOB_SPEC_FILE,
  METRICS_FILE,
  PRIVACY_REPORT_FILE,
  REPORT_FILE,
  loadJobReport,
  renderJobReport,
} from '@tensorguard/worker/report';
import type { ArtifactFile, ArtifactKind, ArtifactPart, JobState } from './domain.js';
import { JOB_CHECKPOINT_FOLDER } from './confine.js';
import { ApiError } from '../edge/errors.js';

/** The default limit on one artifact's bytes (all its files together): 2 GiB. */
export const DEFAULT_MAX_ARTIFACT_BYTES = 2 * 1024 ** 3;
/** Largest `chunk` message: 1 MiB, well below the default 4 MiB message limit. */
export const ARTIFACT_CHUNK_BYTES = 1024 * 1024;

const CK = JOB_CHECKPOINT_FOLDER;

/** In the checkpoint directory: `round-NNNNNN` (worker-ts/src/checkpoint/store.ts writes it). */
const LATEST_RE = /^round-\d{6}$/;
/** Adapter file names that are sent: plain names, no temporaries (a leading dot). */
const SAFE_NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$/;

const WHAT: Record<ArtifactKind, string> = {
  CHECKPOINT: 'checkpoint',
  ADAPTER: 'adapter',
  REPORT: 'report (report.html)',
  METRICS: 'metrics (metrics.jsonl)',
  PRIVACY_REPORT: 'privacy report (privacy-report.json)',
};

/** The coordinator's file names (worker-ts/src/report), so that the two sides cannot drift. */
const SINGLE_FILE: Partial<Record<ArtifactKind, { name: string; mediaType: string }>> = {
  METRICS: { name: METRICS_FILE, mediaType: 'application/x-ndjson' },
  PRIVACY_REPORT: { name: PRIVACY_REPORT_FILE, mediaType: 'application/json' },
};

function mediaTypeOf(name: string): string {
  if (name.endsWith('.json')) return 'application/json';
  if (name.endsWith('.html')) return 'text/html';
  if (name.endsWith('.jsonl')) return 'application/x-ndjson';
  return 'application/octet-stream';
}

export interface ArtifactRequest {
  jobId: string;
  state: JobState;
  /** The job document (its model kind names why a job has no adapter). */
  spec: Record<string, unknown>;
  kind: ArtifactKind;
  /** The job's own state directory; nothing outside it is opened. */
  jobDir: string;
  /** Refuse artifacts larger than this, in bytes (RESOURCE_EXHAUSTED). */
  maxBytes: number;
  signal: AbortSignal;
}

/** An artifact whose files are open and hashed; `parts()` streams them; `close()` releases them. */
export interface OpenedArtifact {
  kind: ArtifactKind;
  files: ArtifactFile[];
  totalBytes: number;
  /**
   * Each file's header, then its bytes in chunks of at most `chunkBytes`. Throws ABORTED when a
   * file's bytes no longer match the header's SHA-256 (changed in place while being sent).
   */
  parts(signal: AbortSignal, chunkBytes?: number): AsyncGenerator<ArtifactPart>;
  close(): Promise<void>;
}

const inside = (child: string, root: string): boolean => {
  const rel = nodePath.relative(root, child);
  return rel === '' || (!rel.startsWith('..') && !nodePath.isAbsolute(rel));
};

const errno = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | null)?.code;

function modelKind(spec: Record<string, unknown>): string {
  const m = spec.model;
  const k = typeof m === 'object' && m !== null ? (m as Record<string, unknown>).kind : undefined;
  return typeof k === 'string' ? k : 'unknown';
}

/** Opens the chosen artifact of a terminal job; throws ApiError (NOT_FOUND, FAILED_PRECONDITION, RESOURCE_EXHAUSTED). */
export async function openArtifact(r: ArtifactRequest): Promise<OpenedArtifact> {
  const what = WHAT[r.kind];
  const notFound = (why: string) =>
    new ApiError('NOT_FOUND', `job ${r.jobId} has no ${what}: ${why}`, {
      errorInfo: {
        reason: 'ARTIFACT_NOT_FOUND',
        domain: 'tensorguard.dev',
        metadata: { job_id: r.jobId, kind: r.kind },
      },
    });
  const ended = `it ended (${r.state}) without writing one`;
  // Host paths stay out of messages: the tenant does not need the server's layout.
  const refused = (why: string) =>
    new ApiError('FAILED_PRECONDITION', `job ${r.jobId}'s ${what} cannot be sent: ${why}`, {
      preconditionFailure: [{ type: 'ARTIFACT', subject: r.jobId, description: why }],
    });

  let jobReal: string;
  try {
    jobReal = await fsp.realpath(r.jobDir);
  } catch (err) {
    if (errno(err) === 'ENOENT') throw notFound(ended);
    throw err;
  }
  /** `rel` under the job directory, symlinks resolved and confined; null when it does not exist. */
  const resolve = async (rel: string): Promise<string | null> => {
    let real: string;
    try {
      real = await fsp.realpath(nodePath.join(jobReal, rel));
    } catch (err) {
      if (errno(err) === 'ENOENT' || errno(err) === 'ENOTDIR') return null;
      throw err;
    }
    if (!inside(real, jobReal)) throw refused(`${nodePath.basename(rel)} links outside the job's directory`);
    return real;
  };

  const wanted: Array<{ name: string; path: string; mediaType: string }> = [];
  let rendered: Buffer | null = null;
  if (r.kind === 'REPORT') {
    rendered = await renderReport(r, resolve, notFound(ended), refused);
  } else if (r.kind === 'CHECKPOINT') {
    const latest = await resolve(`${CK}/LATEST`);
    if (latest === null) throw notFound(ended);
    const name = (await fsp.readFile(latest, 'utf8')).trim();
    if (!LATEST_RE.test(name)) throw refused('its LATEST pointer does not name a checkpoint');
    const model = await resolve(`${CK}/${name}/model.safetensors`);
    if (model === null) throw notFound(`the checkpoint LATEST names (${name}) has no model.safetensors`);
    wanted.push({ name: 'model.safetensors', path: model, mediaType: 'application/octet-stream' });
  } else if (r.kind === 'ADAPTER') {
    const dir = await resolve(`${CK}/${ADAPTER_DIR}`);
    if (dir === null) {
      throw notFound(
        r.state === 'SUCCEEDED'
          ? `its model (model.kind "${modelKind(r.spec)}") trains no LoRA adapter; ask for the checkpoint (ARTIFACT_KIND_CHECKPOINT)`
          : ended,
      );
    }
    let entries: fs.Dirent[];
    try {
      entries = await fsp.readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (errno(err) === 'ENOTDIR') throw refused('adapter is not a directory');
      throw err;
    }
    for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      if (!SAFE_NAME_RE.test(e.name) || !(e.isFile() || e.isSymbolicLink())) continue;
      const p = await resolve(`${CK}/${ADAPTER_DIR}/${e.name}`);
      if (p !== null) wanted.push({ name: e.name, path: p, mediaType: mediaTypeOf(e.name) });
    }
    if (wanted.length === 0) throw notFound('its adapter directory is empty');
  } else {
    const f = SINGLE_FILE[r.kind]!;
    const p = await resolve(`${CK}/${f.name}`);
    if (p === null) throw notFound(ended);
    wanted.push({ name: f.name, path: p, mediaType: f.mediaType });
  }

  const open: Source[] = [];
  const closeAll = async () => {
    await Promise.all(
      open.splice(0).map((o) => ('handle' in o ? o.handle.close() : undefined)?.catch(() => undefined)),
    );
  };
  try {
    const sizes: number[] = [];
    if (rendered !== null) {
      open.push({
        file: { name: REPORT_FILE, sizeBytes: 0, sha256: '', mediaType: 'text/html' },
        data: rendered,
      });
      sizes.push(rendered.length);
    }
    for (const w of wanted) {
      // O_NOFOLLOW: the resolved path must still not be a link when it is opened.
      const h = await fsp.open(w.path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
      open.push({ file: { name: w.name, sizeBytes: 0, sha256: '', mediaType: w.mediaType }, handle: h });
      const st = await h.stat();
      if (!st.isFile()) throw refused(`${w.name} is not a regular file`);
      sizes.push(st.size);
    }
    const total = sizes.reduce((a, b) => a + b, 0);
    if (total > r.maxBytes) {
      throw new ApiError(
        'RESOURCE_EXHAUSTED',
        `job ${r.jobId}'s ${what} is ${total} bytes, above this server's limit of ${r.maxBytes} bytes ` +
          'per artifact; ask the operator to raise serve --max-artifact-bytes',
        {
          errorInfo: {
            reason: 'ARTIFACT_TOO_LARGE',
            domain: 'tensorguard.dev',
            metadata: { size_bytes: String(total), limit_bytes: String(r.maxBytes) },
          },
        },
      );
    }
    for (let i = 0; i < open.length; i++) {
      const o = open[i]!;
      o.file.sizeBytes = sizes[i]!;
      o.file.sha256 =
        'handle' in o
          ? await hashHandle(o.handle, sizes[i]!, r.signal)
          : crypto.createHash('sha256').update(o.data).digest('hex');
    }
    return {
      kind: r.kind,
      files: open.map((o) => ({ ...o.file })),
      totalBytes: total,
      parts: (signal, chunkBytes = ARTIFACT_CHUNK_BYTES) => streamParts(open, signal, chunkBytes, r.jobId),
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    if (err instanceof ApiError) throw err;
    if (errno(err) === 'ELOOP') throw refused('a file was replaced by a link while it was opened');
    throw err;
  }
}

/** An artifact file: open on disk, or built in memory (the report). */
type Source = { file: ArtifactFile } & ({ handle: fsp.FileHandle } | { data: Buffer });

/**
 * The job's report, rendered here from its metrics.jsonl and privacy report with the renderer
 * the coordinator uses (worker-ts/src/report), rather than the report.html on disk: that one
 * names host paths (the checkpoint folder, the job document as the cluster ran it, with absolute
 * data paths). This one shows the document as GetJob does and paths relative to the job.
 */
async function renderReport(
  r: ArtifactRequest,
  resolve: (rel: string) => Promise<string | null>,
  missing: ApiError,
  refused: (why: string) => ApiError,
): Promise<Buffer> {
  const ck = await resolve(CK);
  if (ck === null) throw missing;
  // Every file the renderer reads, confined first (a link out is refused).
  const found = await Promise.all(
    [METRICS_FILE, PRIVACY_REPORT_FILE, JOB_SPEC_FILE].map((f) => resolve(`${CK}/${f}`)),
  );
  if (found[0] === null && found[1] === null) throw missing;
  let input;
  try {
    input = loadJobReport(ck);
  } catch (err) {
    // Its message names host paths; the tenant gets the category.
    throw refused(`its metrics or privacy report cannot be read (${(err as Error).name})`);
  }
  const shown = `${r.jobId}/${CK}`;
  const html = renderJobReport({
    ...input,
    checkpointDir: shown,
    checkpoint: input.checkpoint === null ? null : `${shown}/${nodePath.basename(input.checkpoint)}`,
    adapter: input.adapter === null ? null : `${shown}/${ADAPTER_DIR}`,
    spec: r.spec,
  });
  return Buffer.from(html, 'utf8');
}

async function* readRange(
  h: fsp.FileHandle,
  size: number,
  signal: AbortSignal,
  chunkBytes: number,
): AsyncGenerator<Uint8Array> {
  let pos = 0;
  while (pos < size) {
    signal.throwIfAborted();
    // A fresh buffer per chunk: the consumer may still hold the previous one (grpc-js queues writes).
    const buf = Buffer.allocUnsafe(Math.min(chunkBytes, size - pos));
    const { bytesRead } = await h.read(buf, 0, buf.length, pos);
    if (bytesRead === 0) break; // truncated meanwhile: the hash check below reports it
    pos += bytesRead;
    yield buf.subarray(0, bytesRead);
  }
}

async function hashHandle(h: fsp.FileHandle, size: number, signal: AbortSignal): Promise<string> {
  const hash = crypto.createHash('sha256');
  let n = 0;
  for await (const b of readRange(h, size, signal, 4 * ARTIFACT_CHUNK_BYTES)) {
    hash.update(b);
    n += b.length;
  }
  if (n !== size) throw new ApiError('ABORTED', 'the artifact changed while it was being read; retry');
  return hash.digest('hex');
}

async function* streamParts(
  open: Source[],
  signal: AbortSignal,
  chunkBytes: number,
  jobId: string,
): AsyncGenerator<ArtifactPart> {
  for (const o of open) {
    const file = o.file;
    yield { type: 'file', file: { ...file } };
    if ('data' in o) {
      for (let pos = 0; pos < o.data.length; pos += chunkBytes) {
        signal.throwIfAborted();
        yield { type: 'chunk', data: o.data.subarray(pos, pos + chunkBytes) };
      }
      continue;
    }
    const handle = o.handle;
    const hash = crypto.createHash('sha256');
    let n = 0;
    for await (const data of readRange(handle, file.sizeBytes, signal, chunkBytes)) {
      hash.update(data);
      n += data.length;
      yield { type: 'chunk', data };
    }
    if (n !== file.sizeBytes || hash.digest('hex') !== file.sha256) {
      throw new ApiError(
        'ABORTED',
        `job ${jobId}'s ${file.name} changed while it was being sent; download it again`,
      );
    }
  }
}
