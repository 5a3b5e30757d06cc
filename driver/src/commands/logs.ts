import { repoRoot } from '../paths.js';
import { requireCluster } from '../ray/cluster.js';
import { waitTerminal } from '../ray/job.js';
import { jobIdArg, parseArgs, str, withRayErrors } from './job-common.js';
import type { Command } from './types.js';

export const command: Command = {
  name: 'logs',
  summary: "print a job's logs; -f follows them until the job ends",
  usage: [
    'usage: tensorguard logs <job-id> [-f|--follow] [--address URL]',
    '',
    "Prints the job's logs (the entrypoint's progress/result JSON lines and every actor's",
    'forwarded Node logs). With -f, streams them until the job ends or Ctrl-C (the job goes on).',
  ].join('\n'),
  run: async (args, io) => {
    const p = parseArgs(args, { booleans: ['follow'], values: ['address'], aliases: { '-f': '--follow' } });
    const id = jobIdArg(p);
    return withRayErrors(io, 'logs', async () => {
      const { client } = requireCluster({ address: str(p.flags, 'address') }, io.env, repoRoot(io.env));
      if (p.flags.follow !== true) {
        io.stdout(await client.logs(id));
        return 0;
      }
      try {
        for await (const chunk of client.tail(id, io.signal)) io.stdout(chunk);
      } catch (err) {
        if (!io.signal.aborted) throw err;
      }
      if (!io.signal.aborted) await waitTerminal(client, id, 10_000);
      return 0;
    });
  },
};
