// Submitting a training job and following it: the entrypoint command line and runtime_env, and
// the JSON lines the entrypoint prints ({"type":"progress"} per round, {"type":"result"} last).
import crypto from 'node:crypto';
import type { RunConfigJson } from '../spec/resolve.js';
import { lines, TERMINAL_STATUSES, type RayJobDetails, type RayJobsClient } from './jobs-client.js';

/** One round as the coordinator reported it (relayed by the entrypoint). */
export interface ProgressLine {
  type: 'progress';
  round: number;
  rounds_total: number;
  epsilon: number | null;
  delta?: number | null;
  eval_accuracy: number | null;
  /** Mean cross-entropy on the held-out split, beside eval_accuracy (absent from older jobs). */
  eval_loss?: number | null;
  workers_alive?: number;
  round_seconds: number;
  phase_seconds?: Record<string, number>;
}

/** The job's outcome, the entrypoint's last line. */
export interface ResultLine {
  type: 'result';
  job_id: string;
  status: 'succeeded' | 'failed';
  epsilon?: number | null;
  delta?: number | null;
  test_accuracy?: number | null;
  rounds?: number | null;
  checkpoint?: string | null;
  privacy_report?: string | null;
  /** The trained LoRA adapter's folder in PEFT's format (hf-bert jobs). */
  adapter?: string;
  error?: string;
  wall_seconds?: number;
}

/** A progress or result line of the entrypoint, else undefined (a log line). */
export function parseJobLine(line: string): ProgressLine | ResultLine | undefined {
  const s = line.trim();
  if (!s.startsWith('{"type":"progress"') && !s.startsWith('{"type":"result"')) return undefined;
  try {
    return JSON.parse(s) as ProgressLine | ResultLine;
  } catch {
    return undefined;
  }
}

/** The last progress and the result found in a job's logs. */
export function scanLogs(text: string): { progress?: ProgressLine; result?: ResultLine } {
  const out: { progress?: ProgressLine; result?: ResultLine } = {};
  for (const line of text.split('\n')) {
    const p = parseJobLine(line);
    if (p?.type === 'progress') out.progress = p;
    else if (p?.type === 'result') out.result = p;
  }
  return out;
}

/** A job id: the spec's name and 8 random hex digits (also the Ray submission id). */
export function newJobId(name: string): string {
  return `${name}-${crypto.randomBytes(4).toString('hex')}`;
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Variables passed through from the driver's environment to the job, when set (tests, tuning). */
export const FORWARDED_ENV = [
  'TENSORGUARD_COORDINATOR_JS',
  'TENSORGUARD_WORKER_JS',
  'TENSORGUARD_FIXTURE_ROUND_MS',
  'TENSORGUARD_PLACEMENT_TIMEOUT_S',
  'TENSORGUARD_STAGE_TIMEOUT_MS',
  'TENSORGUARD_JOIN_GRACE_MS',
  'TENSORGUARD_DATA_DIR',
] as const;

export interface SubmitOptions {
  jobId: string;
  /** Repository root on the cluster's nodes (with worker-ts/dist built). */
  root: string;
  /**
   * Python with tensorguard_ray installed, on the cluster. Default: `<root>/.venv/bin/python` when
   * the node has it (a cluster started from the repository's own venv), else `python` on PATH.
   */
  python?: string;
  /** Node.js binary on the cluster. Default: `node` on PATH there. */
  node?: string;
  env?: NodeJS.ProcessEnv;
}

/**
 * The job's shell command. Without a given python it is chosen on the node that runs it (the
 * driver cannot see the cluster's filesystem): the repository's `.venv` under TENSORGUARD_ROOT
 * (set in the job's runtime_env) when present, else `python` on PATH. `-m` with
 * PYTHONPATH=<root>/ray-cluster finds tensorguard_ray even where it is not pip-installed.
 */
export function entrypointCommand(config: RunConfigJson, python?: string): string {
  const args = `-m tensorguard_ray.entrypoint --spec-json ${shellQuote(JSON.stringify(config))}`;
  const pythonPath = 'PYTHONPATH="$TENSORGUARD_ROOT/ray-cluster${PYTHONPATH:+:$PYTHONPATH}"';
  if (python !== undefined) return `${pythonPath} ${shellQuote(python)} ${args}`;
  const venv = '"$TENSORGUARD_ROOT/.venv/bin/python"';
  return `if [ -x ${venv} ]; then TG_PY=${venv}; else TG_PY=python; fi; ${pythonPath} exec "$TG_PY" ${args}`;
}

/** Submits the resolved config as a Ray job running `python -m tensorguard_ray.entrypoint`. */
export async function submitTrainingJob(
  client: RayJobsClient,
  config: RunConfigJson,
  opts: SubmitOptions,
): Promise<string> {
  const envVars: Record<string, string> = {
    TENSORGUARD_ROOT: opts.root,
    TENSORGUARD_JOB_ID: opts.jobId,
    ...(opts.node ? { TENSORGUARD_NODE: opts.node } : {}),
  };
  for (const k of FORWARDED_ENV) {
    const v = opts.env?.[k];
    if (v !== undefined && v !== '') envVars[k] = v;
  }
  return client.submit({
    submissionId: opts.jobId,
    entrypoint: entrypointCommand(config, opts.python),
    runtimeEnv: { env_vars: envVars },
    metadata: {
      tensorguard_name: config.name,
      tensorguard_rounds: String(config.rounds),
      // For `tensorguard status --watch`, whose progress line shows ε against it.
      ...(config.privacy.epsilonBudget
        ? { tensorguard_epsilon_budget: String(config.privacy.epsilonBudget) }
        : {}),
    },
    entrypointNumCpus: 0,
  });
}

export interface FollowOptions {
  signal?: AbortSignal;
  onProgress?: (p: ProgressLine) => void;
  onLog?: (line: string) => void;
  /** Poll interval when the log WebSocket is unavailable. Default 1000 ms. */
  pollMs?: number;
}

export interface FollowResult {
  details: RayJobDetails;
  result?: ResultLine;
}

/**
 * Follows a job until Ray reports a terminal status: tails its logs (WebSocket, falling back to
 * polling the logs) and reports progress. Returns early, without stopping the job, when `signal`
 * aborts (the caller decides whether to stop it).
 */
export async function followJob(
  client: RayJobsClient,
  id: string,
  o: FollowOptions = {},
): Promise<FollowResult> {
  let result: ResultLine | undefined;
  let seen = 0; // lines already handled, for the polling fallback
  const handle = (line: string) => {
    seen++;
    const p = parseJobLine(line);
    if (p?.type === 'progress') o.onProgress?.(p);
    else if (p?.type === 'result') result = p;
    else o.onLog?.(line);
  };
  try {
    for await (const line of lines(client.tail(id, o.signal))) handle(line);
  } catch {
    // Aborted (handled below), or the socket failed: then poll the full logs instead, handling
    // only the lines not seen yet.
  }
  for (;;) {
    const details = await client.status(id);
    if (TERMINAL_STATUSES.includes(details.status) || o.signal?.aborted) {
      const all = (await client.logs(id)).split('\n');
      if (all.at(-1) === '') all.pop();
      for (const line of all.slice(seen)) handle(line);
      return { details, ...(result ? { result } : {}) };
    }
    const all = (await client.logs(id)).split('\n');
    if (all.at(-1) === '') all.pop();
    for (const line of all.slice(seen)) handle(line);
    await new Promise((r) => setTimeout(r, o.pollMs ?? 1000));
  }
}

/** Waits until the job reaches a terminal status (or the deadline); returns the last details. */
export async function waitTerminal(
  client: RayJobsClient,
  id: string,
  timeoutMs: number,
): Promise<RayJobDetails> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const d = await client.status(id);
    if (TERMINAL_STATUSES.includes(d.status) || Date.now() > deadline) return d;
    await new Promise((r) => setTimeout(r, 500));
  }
}
