// Validation of job documents arriving through the API: the driver's job-spec schema, the same
// one `tensorguard train` uses, so a bad field gets the same path and message either way.
import { z } from 'zod';
import {
  checkValueBounds,
  DocumentError,
  JobSpecError,
  parseDocumentText,
  parseJobSpec,
  resolveRunConfig,
  validateJobSpec,
} from '../../spec/index.js';
import type { FieldViolation } from '../edge/status-details.js';

export interface SpecIssue {
  /** Dot path inside the job document, e.g. `privacy.delta` ('' = the document itself). */
  path: string;
  message: string;
}

export type SpecResult =
  | { ok: true; spec: Record<string, unknown>; name: string; rounds: number }
  | { ok: false; issues: SpecIssue[] };

/** Validates a parsed job document and applies defaults. */
export type SpecValidator = (doc: unknown) => SpecResult;

/**
 * Decides, once per submission, what needs a choice before a job starts (σ calibrated from a
 * target ε, q from an expected batch size), on a document the validator accepted.
 */
export type SpecResolver = (spec: Record<string, unknown>, signal?: AbortSignal) => Promise<SpecResult>;

/** The job document of a request: parsed YAML or the Struct, with the field prefix for errors. */
export function specDocument(
  spec: { document?: Record<string, unknown> | undefined; yaml?: string | undefined } | undefined,
): { doc: unknown; prefix: string } | { violation: FieldViolation } {
  if (spec === undefined) return { violation: { field: 'spec', description: 'is required' } };
  // Bounded before anything else reads the document: one request must not stall the server.
  const bounded = (prefix: string, parse: () => unknown) => {
    try {
      return { doc: parse(), prefix };
    } catch (err) {
      if (!(err instanceof DocumentError)) throw err;
      const field = err.issue.path === '' ? prefix : `${prefix}.${err.issue.path}`;
      return { violation: { field, description: err.issue.message } };
    }
  };
  if (spec.document !== undefined) {
    const document = spec.document;
    return bounded('spec.document', () => (checkValueBounds(document), document));
  }
  if (spec.yaml !== undefined) {
    const text = spec.yaml;
    return bounded('spec.yaml', () => parseDocumentText(text));
  }
  return { violation: { field: 'spec', description: 'must set document or yaml' } };
}

/**
 * Interim validator, used until the driver's job-spec schema (driver/src/spec) is wired in:
 * checks the fields the API itself reads (name, rounds, privacy, workers, evaluation) and
 * passes the rest through for the cluster to check. Reports every bad field at once.
 */
export const interimSpecValidator: SpecValidator = (doc) => {
  const res = interimSchema.safeParse(doc);
  if (!res.success) {
    return {
      ok: false,
      issues: res.error.issues.map((i) => ({ path: i.path.map(String).join('.'), message: i.message })),
    };
  }
  return {
    ok: true,
    spec: res.data as Record<string, unknown>,
    name: res.data.name,
    rounds: res.data.rounds,
  };
};

const interimSchema = z.looseObject({
  name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 characters from [A-Za-z0-9._-]'),
  rounds: z.number().int().min(1, 'must be an integer ≥ 1').max(1_000_000),
  workers: z.looseObject({ count: z.number().int().min(1, 'must be an integer ≥ 1').max(1024) }),
  privacy: z.looseObject({
    clipNorm: z.number().positive('must be a number > 0'),
    noiseMultiplier: z.number().min(0, 'must be a number ≥ 0'),
    delta: z.number().gt(0, 'must be in (0, 1)').lt(1, 'must be in (0, 1)'),
    samplingRate: z.number().gt(0, 'must be in (0, 1]').max(1, 'must be in (0, 1]'),
    epsilonBudget: z.number().positive('must be a number > 0 or null').nullable().default(null),
    accountant: z.enum(['rdp', 'pld']).default('rdp'),
  }),
  evaluation: z
    .looseObject({ everyRounds: z.number().int().min(1, 'must be an integer ≥ 1') })
    .default({ everyRounds: 1 }),
});

/** The driver's job-spec schema (driver/src/spec), the one `tensorguard train` uses. */
export const driverSpecValidator: SpecValidator = (doc) => {
  const res = validateJobSpec(doc);
  if (!res.ok) return { ok: false, issues: res.issues };
  const spec = JSON.parse(JSON.stringify(res.spec)) as Record<string, unknown>;
  return { ok: true, spec, name: res.spec.name, rounds: res.spec.rounds };
};

/**
 * Resolves a validated job document as `tensorguard train` does (`resolveRunConfig`): σ from
 * `privacy.targetEpsilon`, q from `privacy.expectedBatchSize`. The document kept with the job is
 * the resolved one (`noiseMultiplier` and `samplingRate` in place of the target and batch size),
 * so that the budget check, GetJob and the privacy report state the parameters the job runs with.
 * A value that cannot be derived is a spec issue (INVALID_ARGUMENT), not a cluster error.
 */
export const driverSpecResolver: SpecResolver = async (doc) => {
  let spec;
  try {
    spec = parseJobSpec(doc);
    // jobId and dataDir only place checkpoints; the backend resolves again with the real ones.
    const cfg = await resolveRunConfig(spec, { jobId: 'validation', dataDir: '/' });
    const { targetEpsilon: _t, expectedBatchSize: _b, ...privacy } = spec.privacy;
    const resolved = {
      ...spec,
      privacy: {
        ...privacy,
        noiseMultiplier: cfg.privacy.noiseMultiplier,
        samplingRate: cfg.privacy.samplingRate,
      },
    };
    const out = JSON.parse(JSON.stringify(resolved)) as Record<string, unknown>;
    return { ok: true, spec: out, name: spec.name, rounds: spec.rounds };
  } catch (err) {
    if (err instanceof JobSpecError) return { ok: false, issues: err.issues };
    throw err;
  }
};
