// Path confinement for job documents submitted through the API: a tenant reads only below its
// own data root and writes only in the job's own directory under its state root. The CLI
// (`tensorguard train`, a user's own machine) does not use this: its paths stay plain.
import fs from 'node:fs';
import nodePath from 'node:path';
import type { SpecIssue } from './spec.js';

export interface TenantRoots {
  /** Readable roots: `<dataRoot>/<tenant>/`. */
  dataRoot: string;
  /** Writable roots: `<stateRoot>/<tenant>/jobs/<job id>/` only. */
  stateRoot: string;
}

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj | undefined =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : undefined;

/** The read-only path fields of a job document (dot paths). */
export const READ_PATH_FIELDS = [
  'dataset.path',
  'dataset.testPath',
  'evaluation.testPath',
  'model.baseCheckpoint',
  'model.path',
  'model.initAdapter',
] as const;

/** A tenant name usable as one path component (api-keys allows `.`/`..`, which are not). */
function safeTenant(tenant: string): boolean {
  return /^[A-Za-z0-9._-]{1,64}$/.test(tenant) && tenant !== '.' && tenant !== '..';
}

export function tenantDataRoot(roots: TenantRoots, tenant: string): string {
  return nodePath.join(nodePath.resolve(roots.dataRoot), tenant);
}

/** The job's own directory, the only place its checkpoints and ledger may be written. */
export function jobStateDir(roots: TenantRoots, tenant: string, jobId: string): string {
  return nodePath.join(nodePath.resolve(roots.stateRoot), tenant, 'jobs', jobId);
}

/** The folder in a job's directory that is its `checkpoint.dir` (checkpoints, ledger, report, adapter). */
export const JOB_CHECKPOINT_FOLDER = 'checkpoints';

/**
 * `p` with `..` and every symlink in its existing part resolved (fs.realpath on the longest
 * existing prefix, the rest appended), so that a link inside a root pointing out is seen as out.
 */
export function realpathExisting(p: string): string {
  let head = nodePath.resolve(p);
  const rest: string[] = [];
  for (;;) {
    try {
      return nodePath.join(fs.realpathSync.native(head), ...rest.reverse());
    } catch {
      const parent = nodePath.dirname(head);
      if (parent === head) return nodePath.join(head, ...rest.reverse());
      rest.push(nodePath.basename(head));
      head = parent;
    }
  }
}

function inside(child: string, root: string): boolean {
  const rel = nodePath.relative(root, child);
  return rel === '' || (!rel.startsWith('..') && !nodePath.isAbsolute(rel));
}

/**
 * Confines the paths of a validated job document. Relative paths resolve against the tenant's
 * data root; every read path must lie inside it after `..` and symlinks are resolved.
 * `checkpoint.dir` is refused: the server places checkpoints in the job's own directory (the job
 * id is not known before submission). Returns the document with absolute, resolved paths, or
 * the issues (one per bad field). Never names a host path in an issue. The returned paths are
 * normalised and relative to the tenant's data root (what GetJob shows).
 */
export function confineJobPaths(
  spec: Obj,
  tenant: string,
  roots: TenantRoots,
): { ok: true; spec: Obj } | { ok: false; issues: SpecIssue[] } {
  const out = structuredClone(spec);
  const issues: SpecIssue[] = [];
  const base = tenantDataRoot(roots, tenant);
  const realBase = realpathExisting(base);
  for (const field of READ_PATH_FIELDS) {
    const [section, key] = field.split('.') as [string, string];
    const holder = obj(out[section]);
    const v = holder?.[key];
    if (v === undefined) continue;
    if (typeof v !== 'string' || v === '' || v.includes('\0')) {
      issues.push({ path: field, message: "must be a path inside the tenant's data root" });
      continue;
    }
    const abs = nodePath.resolve(base, v);
    const real = realpathExisting(abs);
    if (!safeTenant(tenant) || !inside(real, realBase)) {
      issues.push({ path: field, message: "must be inside the tenant's data root" });
      continue;
    }
    // Kept relative to the tenant's root: GetJob shows the document, and the host path is not
    // the tenant's business. specForBackend makes it absolute again.
    holder![key] = nodePath.relative(realBase, real) || '.';
  }
  const dir = obj(out.checkpoint)?.dir;
  if (dir !== undefined) {
    issues.push({
      path: 'checkpoint.dir',
      message:
        "must be left out: checkpoints are written in the job's own directory under the tenant's state root",
    });
  }
  if (!safeTenant(tenant)) issues.push({ path: '', message: 'the tenant name cannot hold files' });
  return issues.length > 0 ? { ok: false, issues } : { ok: true, spec: out };
}

/**
 * The document the backend runs, from a confined one: read paths absolute under the tenant's
 * (real) data root, checkpoints in `<stateRoot>/<tenant>/jobs/<job id>/checkpoints`.
 */
export function specForBackend(spec: Obj, tenant: string, jobId: string, roots: TenantRoots): Obj {
  const out = structuredClone(spec);
  const realBase = realpathExisting(tenantDataRoot(roots, tenant));
  for (const field of READ_PATH_FIELDS) {
    const [section, key] = field.split('.') as [string, string];
    const holder = obj(out[section]);
    const v = holder?.[key];
    if (typeof v === 'string') holder![key] = nodePath.resolve(realBase, v);
  }
  const checkpoint = obj(out.checkpoint) ?? {};
  out.checkpoint = {
    ...checkpoint,
    dir: nodePath.join(jobStateDir(roots, tenant, jobId), JOB_CHECKPOINT_FOLDER),
  };
  return out;
}
