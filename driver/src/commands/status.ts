import { repoRoot } from '../paths.js';
import { requireCluster } from '../ray/cluster.js';
import { scanLogs } from '../ray/job.js';
import { jobIdArg, oneLine, parseArgs, progressText, resultText, str, withRayErrors } from './job-common.js';
import type { Command } from './types.js';

export const command: Command = {
  name: 'status',
  summary: "show a job's state, last progress and result (reattaches to a running job)",
  usage: [
    'usage: tensorguard status <job-id> [--address URL] [--json]',
    '',
    "Prints Ray's status of the job, the last round's progress and, once it ended, its result.",
    'The cluster: --address, else RAY_ADDRESS, else the local head of `train --detach`.',
    'Exit 0 when found (whatever its state), 1 when the job or the cluster cannot be found.',
  ].join('\n'),
  run: async (args, io) => {
    const p = parseArgs(args, { booleans: ['json'], values: ['address'] });
    const id = jobIdArg(p);
    return withRayErrors(io, 'status', async () => {
      const { client } = requireCluster({ address: str(p.flags, 'address') }, io.env, repoRoot(io.env));
      const details = await client.status(id);
      const { progress, result } = scanLogs(await client.logs(id));
      if (p.flags.json === true) {
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
        return 0;
      }
      // A failed job's Ray message is its last 20,000 characters of log; its result says why.
      const message = result?.status === 'failed' ? '' : oneLine(details.message ?? '');
      io.stdout(`job ${id}: ${details.status}${message ? ` (${message})` : ''}\n`);
      if (progress) io.stdout(`  ${progressText(progress, undefined)}\n`);
      if (result) io.stdout(`  ${resultText(result).replace(/\n/g, '\n  ')}\n`);
      return 0;
    });
  },
};
