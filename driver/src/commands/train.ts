import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { repoRoot, venvPython } from '../paths.js';
import { findCluster } from '../ray/cluster.js';
import type { RayJobDetails, RayJobsClient } from '../ray/jobs-client.js';
import {
  followJob,
  newJobId,
  submitTrainingJob,
  waitTerminal,
  type ProgressLine,
  type ResultLine,
} from '../ray/job.js';
import { LocalHead, stateDir, writeClusterFile } from '../ray/local-head.js';
import { JobSpecError } from '../spec/errors.js';
import { loadJobSpec } from '../spec/parse.js';
import { resolveRunConfig } from '../spec/resolve.js';
import type { JobSpec } from '../spec/schema.js';
import { liveProgress, oneLine, parseArgs, resultText, str, withRayErrors } from './job-common.js';
import { type Command, type Io, UsageError } from './types.js';

export const command: Command = {
  name: 'train',
  summary: 'run a DP training job on Ray (a private local head when no address is given)',
  usage: [
    'usage: tensorguard train <spec.yaml|json> [--address URL] [--json] [--detach] [--num-cpus N]',
    '',
    'Validates the job spec (every bad field is listed; nothing is submitted), submits it to the',
    'Ray cluster and shows a live progress line: round of total, ε spent of the budget, eval',
    'accuracy, round time, ETA. Ctrl-C stops the job. Exit 0 when the job succeeded, 1 when it',
    'failed, 2 for a bad spec or arguments.',
    '',
    '  --address URL  Ray dashboard URL (default: RAY_ADDRESS, else a private local head that is',
    '                 stopped when train ends; RAY_AUTH_TOKEN is sent when set)',
    '  --json         print the result as one JSON line (progress goes to stderr)',
    '  --detach       print the job id and return; a local head stays up for later',
    '                 `tensorguard status|logs|stop <id>` (its address is in .tensorguard/cluster.json)',
    '  --num-cpus N   logical CPUs of the local head (default 4)',
  ].join('\n'),
  run: async (args, io) => {
    const p = parseArgs(args, { booleans: ['json', 'detach'], values: ['address', 'num-cpus'] });
    if (p.positional.length !== 1) throw new UsageError('expected one job spec file');
    const numCpus = str(p.flags, 'num-cpus');
    if (numCpus !== undefined && !(Number(numCpus) > 0))
      throw new UsageError('--num-cpus must be a number > 0');
    const json = p.flags.json === true;
    const detach = p.flags.detach === true;
    const address = str(p.flags, 'address');

    let spec;
    try {
      spec = loadJobSpec(p.positional[0]!);
    } catch (err) {
      if (err instanceof JobSpecError) {
        io.stderr(`tensorguard train: ${err.message}\n`);
        return 2;
      }
      throw err;
    }
    return runJobSpec(
      spec,
      {
        command: 'train',
        json,
        detach,
        ...(address !== undefined ? { address } : {}),
        ...(numCpus !== undefined ? { numCpus: Number(numCpus) } : {}),
        report: ({ jobId, details, result }) => {
          if (json) {
            io.stdout(
              JSON.stringify(
                result ?? {
                  type: 'result',
                  job_id: jobId,
                  status: 'failed',
                  error: oneLine(details.message ?? ''),
                },
              ) + '\n',
            );
          } else if (result) {
            io.stdout(resultText(result) + '\n');
          } else {
            io.stdout(`job ${jobId} ended ${details.status}: ${oneLine(details.message ?? '')}\n`);
          }
        },
      },
      io,
    );
  },
};

/** How `runJobSpec` ended, for the caller to print. */
export interface JobEnd {
  jobId: string;
  details: RayJobDetails;
  /** The entrypoint's result line, when the job printed one. */
  result?: ResultLine;
  /** Ray says SUCCEEDED and the result says succeeded. */
  ok: boolean;
}

export interface RunJobSpecOptions {
  /** The sub-command, for messages (`tensorguard <command>: …`). */
  command: string;
  /** Dashboard URL; default RAY_ADDRESS, else a private local head. */
  address?: string;
  /** Logical CPUs of a private local head (default 4). */
  numCpus?: number;
  /** Print the job id and return; a local head stays up. */
  detach?: boolean;
  /** Machine-readable output: progress lines are plain lines (never a TTY status line). */
  json: boolean;
  /** After submission: where the job and its live metrics can be seen. */
  onSubmitted?: (s: { jobId: string; dashboardUrl: string; metricsUrl?: string }) => void;
  /** Every round's progress line, after the progress text is shown. */
  onProgress?: (p: ProgressLine) => void;
  /** Prints the outcome of a job that ran to the end (not after Ctrl-C or with `detach`). */
  report: (end: JobEnd) => void;
}

/**
 * `tensorguard train`'s whole path for a validated spec: resolve it (σ, sampling rate, threshold,
 * checkpoint dir), find the cluster or start a private local head, submit, show the live progress
 * line and follow the job to its end; Ctrl-C stops the job. `demo` runs its built-in spec through
 * here. Returns the exit code: 0 succeeded, 1 failed (or a Ray error), 2 a spec that cannot be
 * resolved, 130 after Ctrl-C.
 */
export async function runJobSpec(spec: JobSpec, o: RunJobSpecOptions, io: Io): Promise<number> {
  const root = repoRoot(io.env);
  const jobId = newJobId(spec.name);
  let config;
  try {
    config = await resolveRunConfig(spec, {
      jobId,
      dataDir: io.env.TENSORGUARD_STATE_DIR ?? stateDir(root),
    });
  } catch (err) {
    if (err instanceof JobSpecError) {
      io.stderr(`tensorguard ${o.command}: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const detach = o.detach === true;

  return withRayErrors(io, o.command, async () => {
    const target = findCluster({ address: o.address }, io.env, root);
    let head: LocalHead | undefined;
    let client: RayJobsClient;
    if (target && target.source !== 'cluster file') {
      client = target.client;
    } else {
      io.stderr('starting a private local Ray head…\n');
      head = await LocalHead.start({
        root,
        detach,
        signal: io.signal,
        ...(o.numCpus !== undefined ? { numCpus: o.numCpus } : {}),
      });
      client = head.client();
      if (detach) writeClusterFile(root, head.info);
      io.stderr(`Ray dashboard: ${head.info.dashboardUrl}\n`);
    }
    try {
      const local = head !== undefined;
      await submitTrainingJob(client, config, {
        jobId,
        root,
        ...(local
          ? { python: venvPython(root) }
          : io.env.TENSORGUARD_RAY_PYTHON
            ? { python: io.env.TENSORGUARD_RAY_PYTHON }
            : {}),
        ...(local ? { node: process.execPath } : {}),
        env: io.env,
      });
      if (detach) {
        if (o.json) io.stdout(JSON.stringify({ job_id: jobId, dashboard_url: client.address }) + '\n');
        else io.stdout(`${jobId}\n`);
        return 0;
      }
      io.stderr(`submitted job ${jobId} (tensorguard status ${jobId})\n`);
      o.onSubmitted?.({
        jobId,
        dashboardUrl: client.address,
        ...(head ? { metricsUrl: `http://127.0.0.1:${head.info.metricsPort}/metrics` } : {}),
      });
      return await follow(client, jobId, spec.privacy.epsilonBudget, o, io);
    } finally {
      if (head && !detach) await head.close();
    }
  });
}

async function follow(
  client: RayJobsClient,
  jobId: string,
  budget: number | null,
  o: RunJobSpecOptions,
  io: Io,
): Promise<number> {
  const live = liveProgress(io, budget, !o.json);
  const logTail: string[] = [];
  const onProgress = (pl: ProgressLine) => {
    live.onProgress(pl);
    o.onProgress?.(pl);
  };
  const { details, result } = await followJob(client, jobId, {
    signal: io.signal,
    onProgress,
    onLog: (line) => {
      logTail.push(line);
      if (logTail.length > 2000) logTail.shift();
    },
  });
  live.end();
  if (io.signal.aborted) {
    io.stderr(`stopping job ${jobId}…\n`);
    await client.stop(jobId).catch(() => false);
    const d = await waitTerminal(client, jobId, 30_000);
    io.stderr(`job ${jobId}: ${d.status}\n`);
    return 130;
  }
  const ok = details.status === 'SUCCEEDED' && result?.status === 'succeeded';
  o.report({ jobId, details, ...(result ? { result } : {}), ok });
  if (!ok) io.stderr(`full log: ${await saveJobLog(client, jobId, logTail)}\n`);
  return ok ? 0 : 1;
}

/**
 * Writes a failed job's whole log (Ray's, else the lines seen while following it) to
 * `<tmpdir>/tensorguard-<job id>.log` (0600) and returns that path: a private head and its logs
 * are gone once `train` returns, and the one-line error leaves the traceback out.
 */
async function saveJobLog(client: RayJobsClient, jobId: string, seen: string[]): Promise<string> {
  const file = path.join(os.tmpdir(), `tensorguard-${jobId}.log`);
  const text = await client.logs(jobId).catch(() => seen.join('\n') + '\n');
  fs.writeFileSync(file, text, { mode: 0o600 });
  return file;
}
