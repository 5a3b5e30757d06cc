import { repoRoot } from '../paths.js';
import { requireCluster } from '../ray/cluster.js';
import { parseArgs, str, withRayErrors } from './job-common.js';
import { type Command, UsageError } from './types.js';

export const command: Command = {
  name: 'list',
  summary: 'list the jobs on the Ray cluster',
  usage: 'usage: tensorguard list [--address URL] [--json]\n\nNewest first: id, status, start time, name.',
  run: async (args, io) => {
    const p = parseArgs(args, { booleans: ['json'], values: ['address'] });
    if (p.positional.length > 0) throw new UsageError('list takes no job id');
    return withRayErrors(io, 'list', async () => {
      const { client } = requireCluster({ address: str(p.flags, 'address') }, io.env, repoRoot(io.env));
      const jobs = (await client.list())
        .filter((j) => j.submission_id)
        .sort((a, b) => (b.start_time ?? 0) - (a.start_time ?? 0));
      if (p.flags.json === true) {
        io.stdout(
          JSON.stringify(
            jobs.map((j) => ({
              job_id: j.submission_id,
              status: j.status,
              start_time: j.start_time,
              end_time: j.end_time,
              name: j.metadata?.tensorguard_name ?? null,
            })),
          ) + '\n',
        );
        return 0;
      }
      if (jobs.length === 0) {
        io.stdout('no jobs\n');
        return 0;
      }
      const rows = jobs.map((j) => [
        j.submission_id!,
        j.status,
        j.start_time ? new Date(j.start_time).toISOString().replace(/\.\d+Z$/, 'Z') : '–',
        j.metadata?.tensorguard_name ?? '–',
      ]);
      const widths = [0, 1, 2].map((i) =>
        Math.max(...rows.map((r) => r[i]!.length), ['JOB ID', 'STATUS', 'STARTED'][i]!.length),
      );
      const line = (r: string[]) => r.map((c, i) => (i < 3 ? c.padEnd(widths[i]!) : c)).join('  ') + '\n';
      io.stdout(line(['JOB ID', 'STATUS', 'STARTED', 'NAME']));
      for (const r of rows) io.stdout(line(r));
      return 0;
    });
  },
};
