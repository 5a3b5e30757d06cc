import { repoRoot } from '../paths.js';
import { requireCluster } from '../ray/cluster.js';
import type { RayJobDetails } from '../ray/jobs-client.js';
import { followJob, scanLogs, type ProgressLine, type ResultLine } from '../ray/job.js';
import {
  budgetOf,
  jobIdArg,
  liveProgress,
  oneLine,
  parseArgs,
  progressText,
  resultText,
  str,
  withRayErrors,
} from './job-common.js';
import type { Command, Io } from './types.js';

export const command: Command = {
  name: 'status',
  summary: "show a job's state, last progress and result (reattaches to a running job)",
  usage: [
    'usage: tensorguard status <job-id> [--address URL] [--json] [--watch]',
    '',
    "Prints Ray's status of the job, the last round's progress and, once it ended, its result.",
    '--watch follows the job until it ends with the live progress line of `tensorguard train`',
    '(on stderr; from round 1 for a job that already ran), then prints the same as without it.',
    'Ctrl-C stops watching, not the job.',
    'The cluster: --address, else RAY_ADDRESS, else the local head of `train --detach`.',
    'Exit 0 when found (whatever its state), 1 when the job or the cluster cannot be found.',
    'With --watch: 0 when the job succeeded, 1 when it failed or was stopped, 130 after Ctrl-C.',
  ].join('\n'),
  run: async (args, io) => {
    const p = parseArgs(args, { booleans: ['json', 'watch'], values: ['address'] });
    const id = jobIdArg(p);
    const json = p.flags.json === true;
    return withRayErrors(io, 'status', async () => {
      const { client } = requireCluster({ address: str(p.flags, 'address') }, io.env, repoRoot(io.env));
      if (p.flags.watch !== true) {
        const details = await client.status(id);
        const { progress, result } = scanLogs(await client.logs(id));
        print(io, id, json, details, progress, result);
        return 0;
      }
      // Found first: an unknown id is RayJobNotFoundError (exit 1), not an endless follow.
      const first = await client.status(id);
      const live = liveProgress(io, budgetOf(first.metadata), !json);
      let progress: ProgressLine | undefined;
      const { details, result } = await followJob(client, id, {
        signal: io.signal,
        onProgress: (pl) => {
          progress = pl;
          live.onProgress(pl);
        },
      });
      live.end();
      if (io.signal.aborted) {
        io.stderr(`stopped watching; job ${id} runs on (tensorguard status ${id} --watch)\n`);
        return 130;
      }
      print(io, id, json, details, progress, result);
      return details.status === 'SUCCEEDED' && result?.status !== 'failed' ? 0 : 1;
    });
  },
};

function print(
  io: Io,
  id: string,
  json: boolean,
  details: RayJobDetails,
  progress: ProgressLine | undefined,
  result: ResultLine | undefined,
): void {
  if (json) {
    io.stdout(
      JSON.stringify({
        job_id: id,
        status: details.status,
        message: details.message,
        start_time: details.start_time,
        end_time: details.end_time,
        progress: progress ?? null,
        result: result ?? null,
      }) + '\n',
    );
    return;
  }
  // A failed job's Ray message is its last 20,000 characters of log; its result says why.
  const message = result?.status === 'failed' ? '' : oneLine(details.message ?? '');
  io.stdout(`job ${id}: ${details.status}${message ? ` (${message})` : ''}\n`);
  if (progress) io.stdout(`  ${progressText(progress, budgetOf(details.metadata))}\n`);
  if (result) io.stdout(`  ${resultText(result).replace(/\n/g, '\n  ')}\n`);
}
