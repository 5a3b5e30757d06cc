// parseJobSpec / loadJobSpec / validateJobSpec: the one validating function from a document to
// a JobSpec with every default filled in.
import fs from 'node:fs';
import nodePath from 'node:path';
import { DocumentError, parseDocumentText } from './bounded-yaml.js';
import { crossFieldIssues } from './checks.js';
import { issuesFromZod, JobSpecError, type SpecIssue } from './errors.js';
import { jobSpecSchema, type JobSpec } from './schema.js';

export type ValidationResult = { ok: true; spec: JobSpec } | { ok: false; issues: SpecIssue[] };

/** Validates a parsed document; never throws. Issues come in document order, cross-field last. */
export function validateJobSpec(doc: unknown): ValidationResult {
  const r = jobSpecSchema.safeParse(doc);
  const issues = r.success ? [] : issuesFromZod(r.error, doc, jobSpecSchema);
  for (const extra of crossFieldIssues(doc)) {
    if (!issues.some((i) => i.path === extra.path && i.message === extra.message)) issues.push(extra);
  }
  if (issues.length > 0 || !r.success) return { ok: false, issues };
  return { ok: true, spec: r.data };
}

/** Validates a parsed document. Throws JobSpecError listing every bad field. */
export function parseJobSpec(doc: unknown): JobSpec {
  const r = validateJobSpec(doc);
  if (!r.ok) throw new JobSpecError(r.issues);
  return r.spec;
}

/**
 * Reads a YAML or JSON job spec (JSON is YAML) and validates it. Relative paths in it (dataset,
 * model.baseCheckpoint, checkpoint.dir) are resolved against the file's folder. Throws
 * JobSpecError (with `file`) for an unreadable, unparsable or invalid file.
 */
export function loadJobSpec(file: string): JobSpec {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new JobSpecError([{ path: '', message: `cannot read the file (${code})` }], file);
  }
  let doc: unknown;
  try {
    doc = parseDocumentText(text);
  } catch (err) {
    if (err instanceof DocumentError) throw new JobSpecError([err.issue], file);
    throw err;
  }
  const r = validateJobSpec(doc);
  if (!r.ok) throw new JobSpecError(r.issues, file);
  return resolvePaths(r.spec, nodePath.dirname(nodePath.resolve(file)));
}

/** Makes the spec's relative file paths absolute against `base` (the job runs elsewhere). */
export function resolvePaths(spec: JobSpec, base: string): JobSpec {
  const abs = (p: string | undefined) => (p === undefined ? undefined : nodePath.resolve(base, p));
  const out = structuredClone(spec);
  if (out.dataset.path !== undefined) out.dataset.path = abs(out.dataset.path);
  if (out.dataset.testPath !== undefined) out.dataset.testPath = abs(out.dataset.testPath);
  if (out.evaluation.testPath !== undefined) out.evaluation.testPath = abs(out.evaluation.testPath);
  if (out.model.kind === 'hf-bert') {
    if (out.model.path !== undefined) out.model.path = abs(out.model.path);
    if (out.model.initAdapter !== undefined) out.model.initAdapter = abs(out.model.initAdapter);
  } else if (out.model.baseCheckpoint !== undefined) out.model.baseCheckpoint = abs(out.model.baseCheckpoint);
  if (out.checkpoint.dir !== undefined) out.checkpoint.dir = abs(out.checkpoint.dir);
  return out;
}
