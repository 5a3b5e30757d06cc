// TrainingService in domain terms: validation, tenancy, idempotency, pagination and the
// privacy report. server.ts adapts it to gRPC (auth, limits, logging, status codes).
import crypto from 'node:crypto';
import { isNonPrivate, loadRdp, plannedEpsilon, type PlanParameters } from '../jobs/accounting.js';
import { DEFAULT_MAX_ARTIFACT_BYTES, openArtifact, type OpenedArtifact } from '../jobs/artifacts.js';
import { BackendError, type JobBackend } from '../backends/backend.js';
import {
  isTerminal,
  type ArtifactKind,
  type JobEvent,
  type JobState,
  type ListJobsFilter,
  type PrivacyReport,
} from '../jobs/domain.js';
import { confineJobPaths, jobStateDir, specForBackend, type TenantRoots } from '../jobs/confine.js';
import { ApiError } from './errors.js';
import type { JobMonitor } from '../jobs/monitor.js';
import { canonicalJson, signReport, type SigningKey } from '../jobs/privacy-report.js';
import { specDocument, type SpecResolver, type SpecValidator } from '../jobs/spec.js';
import type { FieldViolation } from './status-details.js';
import type { JobRecord, JobStore, ListCursor } from '../jobs/store.js';

export interface CallContext {
  tenant: string;
  /** Aborted when the call's deadline passes or the client cancels. */
  signal: AbortSignal;
}

export const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;
export const JOB_ID_RE = /^job-[a-z2-7]{26}$/;
export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 500;

export interface ServiceOptions {
  store: JobStore;
  backend: JobBackend;
  monitor: JobMonitor;
  validateSpec: SpecValidator;
  /** Resolves derived parameters after validation (default: none, the document as validated). */
  resolveSpec?: SpecResolver;
  signingKey: SigningKey;
  /**
   * ε of planned rounds for the budget check (default: accounting.plannedEpsilon on this
   * thread; the server passes its accountant pool's, since PLD takes seconds).
   */
  planEpsilon?: (p: PlanParameters, signal?: AbortSignal) => Promise<number>;
  /**
   * Accept jobs without noise (σ = 0, ε infinite). Default false: such a submission is refused
   * with FAILED_PRECONDITION naming `serve --allow-non-private`.
   */
  allowNonPrivate?: boolean;
  /**
   * Per-tenant path roots (serve --data-root, --state-root): every path in a document must lie
   * in `<dataRoot>/<tenant>/`, checkpoints go to `<stateRoot>/<tenant>/jobs/<job id>/`. Without
   * them paths pass unchecked (tests of other behaviour only; `tensorguard serve` always sets them).
   */
  roots?: TenantRoots;
  /** Per-tenant limits on jobs QUEUED or RUNNING at once, and on their workers in total. */
  limits?: { maxJobsPerTenant: number; maxWorkersPerTenant: number };
  /** Largest artifact GetJobArtifact sends, in bytes (default 2 GiB); larger is RESOURCE_EXHAUSTED. */
  maxArtifactBytes?: number;
  now?: () => number;
}

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : {});
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

function checkJobId(jobId: string, field = 'job_id'): void {
  if (!JOB_ID_RE.test(jobId)) {
    throw ApiError.invalidArgument([
      { field, description: 'must look like "job-" + 26 characters from [a-z2-7]' },
    ]);
  }
}

/** Page tokens: base64url JSON of the last row and a digest of the filter it belongs to. */
function encodePageToken(c: ListCursor, filterDigest: string): string {
  return Buffer.from(JSON.stringify({ v: 1, t: c.createTimeMs, j: c.jobId, f: filterDigest })).toString(
    'base64url',
  );
}

function decodePageToken(token: string, filterDigest: string): ListCursor {
  const bad = (why: string) => ApiError.invalidArgument([{ field: 'page_token', description: why }]);
  let o: Obj;
  try {
    o = obj(JSON.parse(Buffer.from(token, 'base64url').toString('utf8')));
  } catch {
    throw bad('is not a token this server issued; pass next_page_token from the previous response unchanged');
  }
  if (o.v !== 1 || typeof o.t !== 'number' || typeof o.j !== 'string' || typeof o.f !== 'string') {
    throw bad('is not a token this server issued; pass next_page_token from the previous response unchanged');
  }
  if (o.f !== filterDigest)
    throw bad('was issued for different filters; repeat the filters of the first page');
  return { createTimeMs: o.t, jobId: o.j };
}

export class TrainingService {
  constructor(private readonly o: ServiceOptions) {}

  private owned(ctx: CallContext, jobId: string): JobRecord {
    checkJobId(jobId);
    const r = this.o.store.get(jobId);
    // Another tenant's job is indistinguishable from a missing one: no existence oracle.
    if (!r || r.tenant !== ctx.tenant) throw new ApiError('NOT_FOUND', `job ${jobId} not found`);
    return r;
  }

  async submit(
    ctx: CallContext,
    req: {
      requestId: string;
      spec: { document?: Obj | undefined; yaml?: string | undefined } | undefined;
      validateOnly: boolean;
    },
  ): Promise<{ job: JobRecord | null; created: boolean }> {
    const violations: FieldViolation[] = [];
    if (!REQUEST_ID_RE.test(req.requestId)) {
      violations.push({
        field: 'request_id',
        description: 'is required: 1 to 128 characters from [A-Za-z0-9._:-] (a UUID per logical submission)',
      });
    }
    const d = specDocument(req.spec);
    let valid: { spec: Obj; name: string; rounds: number } | null = null;
    if ('violation' in d) violations.push(d.violation);
    else {
      const res = this.o.validateSpec(d.doc);
      if (res.ok) valid = res;
      else {
        for (const i of res.issues) {
          violations.push({
            field: i.path === '' ? d.prefix : `${d.prefix}.${i.path}`,
            description: i.message,
          });
        }
      }
    }
    if (violations.length > 0 || valid === null)
      throw ApiError.invalidArgument(violations, 'SubmitJob request');
    // The field the document came in (ts-proto sets `document: undefined` on YAML requests, so
    // the key's presence says nothing).
    const prefix = req.spec?.document !== undefined ? 'spec.document' : 'spec.yaml';
    if (this.o.roots) {
      // Before anything reads a file the document names (σ calibration, the backend).
      const confined = confineJobPaths(valid.spec, ctx.tenant, this.o.roots);
      if (!confined.ok) {
        const at = 'prefix' in d ? d.prefix : prefix;
        throw ApiError.invalidArgument(
          confined.issues.map((i) => ({
            field: i.path === '' ? at : `${at}.${i.path}`,
            description: i.message,
          })),
          'SubmitJob request',
        );
      }
      valid = { ...valid, spec: confined.spec };
    }
    if (this.o.resolveSpec) {
      const res = await this.o.resolveSpec(valid.spec, ctx.signal);
      if (!res.ok) {
        throw ApiError.invalidArgument(
          res.issues.map((i) => ({
            field: i.path === '' ? prefix : `${prefix}.${i.path}`,
            description: i.message,
          })),
          'SubmitJob request',
        );
      }
      valid = res;
    }
    this.checkPrivate(valid.spec, prefix);
    await this.checkBudget(valid.spec, valid.rounds, prefix, ctx.signal);
    if (req.validateOnly) return { job: null, created: false };
    this.checkTenantLimits(ctx.tenant, req.requestId, valid.spec);

    const privacy = obj(valid.spec.privacy);
    const { record, created, conflict } = this.o.store.createJob({
      tenant: ctx.tenant,
      requestId: req.requestId,
      requestHash: crypto.createHash('sha256').update(canonicalJson(valid.spec)).digest('hex'),
      displayName: valid.name,
      roundsTotal: valid.rounds,
      accountant: typeof privacy.accountant === 'string' ? privacy.accountant : 'rdp',
      delta: num(privacy.delta) ?? 0,
      spec: valid.spec,
      backend: this.o.backend.name,
    });
    if (conflict) {
      throw new ApiError(
        'ALREADY_EXISTS',
        `request_id "${req.requestId}" was already used for a different job spec (job ${record.jobId}); ` +
          'use a new request_id for a new job',
        {
          errorInfo: {
            reason: 'REQUEST_ID_REUSED',
            domain: 'tensorguard.dev',
            metadata: { job_id: record.jobId },
          },
        },
      );
    }
    if (!created) return { job: record, created: false };
    // Infinite from the start: a non-private job never reads ε = 0 (the monitor keeps it so).
    if (isNonPrivate(valid.spec)) this.o.store.append(record.jobId, [], { epsilon: Infinity });
    try {
      const spec = this.o.roots
        ? specForBackend(valid.spec, ctx.tenant, record.jobId, this.o.roots)
        : valid.spec;
      const h = await this.o.backend.submit({ jobId: record.jobId, spec, signal: ctx.signal });
      this.o.store.setBackendHandle(record.jobId, h.backendJobId, h.data);
    } catch (err) {
      // Not committed: a retry with the same request_id submits afresh.
      this.o.store.deleteJob(record.jobId);
      if (ctx.signal.aborted)
        throw new ApiError('DEADLINE_EXCEEDED', 'the deadline passed while submitting the job');
      if (err instanceof BackendError) {
        throw new ApiError(
          err.retryable ? 'UNAVAILABLE' : 'FAILED_PRECONDITION',
          // The backend's text may name host paths or quote Ray's output: the log keeps it.
          err.retryable
            ? 'the cluster did not accept the job (unreachable or busy): retry later; the server log has the details'
            : 'the cluster did not accept the job: see the server log',
          {},
          { cause: err },
        );
      }
      throw err;
    }
    this.o.monitor.follow(record.jobId);
    return { job: this.o.store.get(record.jobId)!, created: true };
  }

  /**
   * Per-tenant limits: jobs QUEUED or RUNNING at once and their workers in total. A retry of a
   * request already accepted is not counted against itself (it returns the existing job).
   */
  private checkTenantLimits(tenant: string, requestId: string, spec: Obj): void {
    const l = this.o.limits;
    if (!l) return;
    const active = this.o.store.activeJobs().filter((r) => r.tenant === tenant);
    if (active.some((r) => r.requestId === requestId)) return;
    const workers = (r: Obj) => num(obj(r.workers).count) ?? 0;
    const used = active.reduce((n, r) => n + workers(r.spec), 0);
    const wanted = workers(spec);
    const exhausted = (what: string) =>
      new ApiError('RESOURCE_EXHAUSTED', what, {
        errorInfo: { reason: 'TENANT_LIMIT', domain: 'tensorguard.dev', metadata: {} },
      });
    if (active.length >= l.maxJobsPerTenant) {
      throw exhausted(
        `the tenant has ${active.length} jobs queued or running, the limit is ${l.maxJobsPerTenant}; ` +
          'wait for one to finish or cancel one',
      );
    }
    if (used + wanted > l.maxWorkersPerTenant) {
      throw exhausted(
        `the tenant's jobs use ${used} workers and this one asks for ${wanted}, the limit is ` +
          `${l.maxWorkersPerTenant}; wait for a job to finish or ask for fewer workers`,
      );
    }
  }

  /**
   * A job without noise releases its updates in clear (ε = ∞): refused unless the operator
   * allowed it, so that no tenant gets a non-private job by a default or a typo.
   */
  private checkPrivate(spec: Obj, prefix: string): void {
    if (this.o.allowNonPrivate || !isNonPrivate(spec)) return;
    throw new ApiError(
      'FAILED_PRECONDITION',
      `${prefix}.privacy.noiseMultiplier is 0: the job would train without differential privacy ` +
        '(ε = ∞). Set privacy.noiseMultiplier > 0 or privacy.targetEpsilon; non-private jobs run ' +
        'only on a server started with --allow-non-private',
      {
        preconditionFailure: [
          {
            type: 'NON_PRIVATE',
            subject: `${prefix}.privacy.noiseMultiplier`,
            description: 'noiseMultiplier 0 (ε = ∞) is not allowed on this server',
          },
        ],
      },
    );
  }

  /** FAILED_PRECONDITION when the planned rounds would spend more than privacy.epsilonBudget. */
  private async checkBudget(spec: Obj, rounds: number, prefix: string, signal: AbortSignal): Promise<void> {
    const p = obj(spec.privacy);
    const budget = num(p.epsilonBudget);
    const q = num(p.samplingRate);
    const sigma = num(p.noiseMultiplier);
    const delta = num(p.delta);
    if (budget === null || q === null || sigma === null || delta === null) return;
    const accountant = p.accountant === 'pld' ? 'pld' : 'rdp';
    const plan = this.o.planEpsilon ?? plannedEpsilon;
    const eps = await plan({ samplingRate: q, noiseMultiplier: sigma, delta, rounds, accountant }, signal);
    if (eps > budget) {
      // Under 'pld' the user may expect the Gaussian's PLD figure: name it, as what it is.
      const reference =
        accountant === 'pld'
          ? ` (the continuous Gaussian's PLD, a non-rigorous reference, gives ${(
              await plan(
                {
                  samplingRate: q,
                  noiseMultiplier: sigma,
                  delta,
                  rounds,
                  accountant,
                  continuousReference: true,
                },
                signal,
              )
            ).toFixed(4)}; the budget is checked on the rigorous bound, docs/privacy.md)`
          : '';
      throw new ApiError(
        'FAILED_PRECONDITION',
        `privacy budget exhausted: ${rounds} rounds at samplingRate ${q} and noiseMultiplier ${sigma} reach ` +
          `ε = ${eps.toFixed(4)} at δ = ${delta}${reference}, above privacy.epsilonBudget ${budget}; lower rounds or ` +
          'samplingRate, or raise noiseMultiplier',
        {
          preconditionFailure: [
            {
              type: 'PRIVACY_BUDGET',
              subject: `${prefix}.privacy.epsilonBudget`,
              description: `planned ε ${eps.toFixed(4)} > budget ${budget}`,
            },
          ],
        },
      );
    }
  }

  get(ctx: CallContext, jobId: string): JobRecord {
    return this.owned(ctx, jobId);
  }

  list(
    ctx: CallContext,
    req: { pageSize: number; pageToken: string; filter: ListJobsFilter },
  ): { jobs: JobRecord[]; nextPageToken: string } {
    const f = req.filter;
    if (f.createTimeFromMs !== null && f.createTimeToMs !== null && f.createTimeFromMs > f.createTimeToMs) {
      throw ApiError.invalidArgument([
        { field: 'create_time_from', description: 'must not be after create_time_to' },
      ]);
    }
    // Sizes above the maximum are coerced to it (AIP-158), not refused.
    const size = req.pageSize === 0 ? DEFAULT_PAGE_SIZE : Math.min(req.pageSize, MAX_PAGE_SIZE);
    const digest = crypto
      .createHash('sha256')
      .update(canonicalJson({ ...f, states: [...f.states].sort() }))
      .digest('base64url')
      .slice(0, 16);
    const cursor = req.pageToken === '' ? null : decodePageToken(req.pageToken, digest);
    const { jobs, more } = this.o.store.list(ctx.tenant, f, size, cursor);
    const last = jobs.at(-1);
    return {
      jobs,
      nextPageToken:
        more && last ? encodePageToken({ createTimeMs: last.createTimeMs, jobId: last.jobId }, digest) : '',
    };
  }

  async cancel(ctx: CallContext, jobId: string, reason: string): Promise<JobRecord> {
    if (reason.length > 1024) {
      throw ApiError.invalidArgument([{ field: 'reason', description: 'must be at most 1024 characters' }]);
    }
    const r = this.owned(ctx, jobId);
    if (r.state === 'CANCELLED') return r;
    if (isTerminal(r.state)) {
      throw new ApiError(
        'FAILED_PRECONDITION',
        `job ${jobId} already ${r.state.toLowerCase()}; it cannot be cancelled`,
        {
          preconditionFailure: [{ type: 'JOB_STATE', subject: jobId, description: `job is ${r.state}` }],
        },
      );
    }
    try {
      await this.o.monitor.cancel(r, reason || 'cancelled by request');
    } catch (err) {
      if (err instanceof BackendError) {
        throw new ApiError(
          'UNAVAILABLE',
          `the cluster did not accept the cancellation: ${err.message}`,
          {},
          { cause: err },
        );
      }
      throw err;
    }
    return this.o.store.get(jobId)!;
  }

  /**
   * The job's events after `afterEventId`, in order, waiting for new ones; ends after the
   * terminal state event (at once when resuming after it) or when ctx.signal aborts.
   */
  async *watch(ctx: CallContext, jobId: string, afterEventId: number): AsyncGenerator<JobEvent> {
    this.owned(ctx, jobId);
    let last = afterEventId;
    while (!ctx.signal.aborted) {
      const events = this.o.store.eventsAfter(jobId, last, 256);
      for (const e of events) {
        yield e;
        last = e.eventId;
        if (e.type === 'state_changed' && isTerminal(e.state)) return;
      }
      if (events.length === 0) {
        const r = this.o.store.get(jobId)!;
        if (isTerminal(r.state) && last >= r.lastEventId) return;
        // No await between the read above and registering the waiter: no wake-up is missed.
        await this.o.monitor.hub.wait(jobId, ctx.signal);
      }
    }
  }

  /**
   * Opens an artifact of a finished job (SUCCEEDED, FAILED or CANCELLED) for streaming; the caller
   * closes it. Files come only from the job's own directory under the tenant's state root.
   * NOT_FOUND (no such job for this tenant, or no such artifact), FAILED_PRECONDITION (the job
   * has not ended; the server has no state root), RESOURCE_EXHAUSTED (above maxArtifactBytes).
   */
  async artifact(ctx: CallContext, jobId: string, kind: ArtifactKind): Promise<OpenedArtifact> {
    const r = this.owned(ctx, jobId);
    if (!isTerminal(r.state)) {
      throw new ApiError(
        'FAILED_PRECONDITION',
        `job ${jobId} is ${r.state}: its artifacts can be fetched once it has ended (WatchJob says when)`,
        { preconditionFailure: [{ type: 'JOB_STATE', subject: jobId, description: `job is ${r.state}` }] },
      );
    }
    if (!this.o.roots) {
      // Without a state root a job's files may be anywhere its document said: nothing is sent.
      throw new ApiError(
        'FAILED_PRECONDITION',
        'this server keeps no job files (it runs without a state root); artifacts are not available',
      );
    }
    return openArtifact({
      jobId,
      state: r.state,
      spec: r.spec,
      kind,
      jobDir: jobStateDir(this.o.roots, ctx.tenant, jobId),
      maxBytes: this.o.maxArtifactBytes ?? DEFAULT_MAX_ARTIFACT_BYTES,
      signal: ctx.signal,
    });
  }

  async privacyReport(ctx: CallContext, jobId: string): Promise<PrivacyReport> {
    const r = this.owned(ctx, jobId);
    const spec = r.spec;
    const p = obj(spec.privacy);
    const { RDP_ORDERS } = await loadRdp();
    const delta = r.privacySpent.delta || (num(p.delta) ?? 0);
    const q = num(p.samplingRate) ?? 0;
    const workers = num(obj(spec.workers).count) ?? 0;
    const reported = Array.isArray(r.privacy.shards) ? (r.privacy.shards as unknown[]).map(obj) : null;
    const shards = reported
      ? reported.map((s, i) => ({
          shardId: typeof s.shard_id === 'string' ? s.shard_id : `shard-${i}`,
          epsilon: num(s.epsilon) ?? r.privacySpent.epsilon,
          delta: num(s.delta) ?? delta,
          examples: num(s.examples) ?? 0,
          samplingRate: num(s.sampling_rate) ?? q,
          steps: num(s.steps) ?? r.roundsCompleted,
        }))
      : [];
    const state: JobState = r.state;
    return signReport(
      {
        jobId: r.jobId,
        tenant: r.tenant,
        state,
        generateTimeMs: (this.o.now ?? Date.now)(),
        epsilon: isNonPrivate(spec) ? Infinity : r.privacySpent.epsilon,
        delta,
        epsilonBudget: num(p.epsilonBudget) ?? 0,
        roundsCompleted: r.roundsCompleted,
        parameters: {
          accountant: r.privacySpent.accountant || 'rdp',
          mechanism: 'poisson_subsampled_gaussian',
          noiseMultiplier: num(p.noiseMultiplier) ?? 0,
          clipNorm: num(p.clipNorm) ?? 0,
          samplingRate: q,
          steps: r.roundsCompleted,
          delta,
          // Both accountants report the integer mechanism's rigorous RDP bound (docs/privacy.md).
          orders: RDP_ORDERS,
          // The run config's quorum (`threshold`: its old name, in configs resolved before it).
          minContributors:
            num(obj(spec.secureAggregation).quorum ?? obj(spec.secureAggregation).threshold) ?? 0,
          numWorkers: workers,
        },
        shards,
      },
      this.o.signingKey,
    );
  }
}
