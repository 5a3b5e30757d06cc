import { repoRoot } from '../paths.js';
import { requireCluster } from '../ray/cluster.js';
import { waitTerminal } from '../ray/job.js';
import { jobIdArg, parseArgs, str, withRayErrors } from './job-common.js';
import type { Command } from './types.js';

export const command: Command = {
  name: 'stop',
  summary: 'stop a running job (its actors and Node processes go with it)',
  usage: [
    'usage: tensorguard stop <job-id> [--address URL] [--json]',
    '',
    'Asks Ray to stop the job and waits (up to 30 s) until it has stopped. Exit 0 when it is',
    'stopped or had already ended, 1 otherwise.',
  ].join('\n'),
  run: async (args, io) => {
    const p = parseArgs(args, { booleans: ['json'], values: ['address'] });
    const id = jobIdArg(p);
    return withRayErrors(io, 'stop', async () => {
      const { client } = requireCluster({ address: str(p.flags, 'address') }, io.env, repoRoot(io.env));
      const stopped = await client.stop(id);
      const d = await waitTerminal(client, id, 30_000);
      if (p.flags.json === true) io.stdout(JSON.stringify({ job_id: id, stopped, status: d.status }) + '\n');
      else io.stdout(`job ${id}: ${stopped ? 'stop requested, now' : 'had already ended:'} ${d.status}\n`);
      return ['STOPPED', 'SUCCEEDED', 'FAILED'].includes(d.status) ? 0 : 1;
    });
  },
};
