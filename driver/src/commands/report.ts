// `tensorguard report`: (re)builds a job's self-contained HTML report from what the job left in
// its checkpoint folder. The builder is worker-ts's (the coordinator writes the same report.html
// at the end of every job); this file finds the folder and maps the outcome to the CLI.
import { JobReportError, writeJobReport } from '@tensorguard/worker/report';
import fs from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../paths.js';
import { stateDir } from '../ray/local-head.js';
import { parseArgs, str } from './job-common.js';
import { type Command, type Io, UsageError } from './types.js';

export const command: Command = {
  name: 'report',
  summary: "build a job's HTML report (charts, privacy certificate, spec) from its checkpoint folder",
  usage: [
    'usage: tensorguard report <job-id | checkpoint-dir> [--out FILE] [--json]',
    '',
    "Builds one self-contained HTML file (it opens offline: the charts' library is inlined) from",
    "the job's metrics.jsonl, privacy-report.json and job-spec.json: ε spent per round with the",
    'budget, held-out accuracy and loss, the time of each round by phase, bytes per round, workers',
    'and dropouts, the privacy certificate, the resolved spec and the checkpoint and adapter paths.',
    'Every job already writes it as report.html beside its checkpoints; this rebuilds it.',
    '',
    "  <job-id>        a job of this machine's state folder: <state>/jobs/<job-id>/checkpoints",
    '                  (state: TENSORGUARD_STATE_DIR, else .tensorguard/ in the repository)',
    '  <checkpoint-dir> the checkpoint.dir of any job (a job whose spec set checkpoint.dir)',
    '  --out FILE      where to write (default: report.html in the checkpoint folder)',
    '  --json          print {"report": FILE, "rounds": N} instead of a sentence',
    '',
    'Exit 0 when written, 1 when the job or its files cannot be found or read, 2 for bad arguments.',
  ].join('\n'),
  run(args, io) {
    const p = parseArgs(args, { booleans: ['json'], values: ['out'] });
    if (p.positional.length !== 1) throw new UsageError('expected one job id or checkpoint folder');
    const target = p.positional[0]!;
    const out = str(p.flags, 'out');
    try {
      const dir = checkpointDirOf(target, io);
      const { file, rounds } = writeJobReport(dir, out === undefined ? undefined : path.resolve(io.cwd, out));
      if (p.flags.json === true) io.stdout(JSON.stringify({ report: file, rounds }) + '\n');
      else io.stdout(`report of ${rounds} round(s) written to ${file}\n`);
      return Promise.resolve(0);
    } catch (err) {
      if (err instanceof JobReportError || err instanceof ReportTargetError) {
        io.stderr(`tensorguard report: ${err.message}\n`);
        return Promise.resolve(1);
      }
      throw err;
    }
  },
};

class ReportTargetError extends Error {}

/** Job ids as `newJobId` makes them: a name, a dash and a suffix; never a path. */
const JOB_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/**
 * The checkpoint folder a `report` argument names: an existing folder (a job's folder with a
 * `checkpoints/` inside is taken as that), else a job id of the local state folder.
 */
function checkpointDirOf(target: string, io: Io): string {
  const asPath = path.resolve(io.cwd, target);
  if (fs.existsSync(asPath) && fs.statSync(asPath).isDirectory()) {
    const inner = path.join(asPath, 'checkpoints');
    const own = ['metrics.jsonl', 'privacy-report.json'].some((f) => fs.existsSync(path.join(asPath, f)));
    return !own && fs.existsSync(inner) ? inner : asPath;
  }
  if (!JOB_ID.test(target) || target.includes('..')) {
    throw new ReportTargetError(
      `${target} is neither a folder nor a job id (letters, digits, '.', '_', '-')`,
    );
  }
  const state = io.env.TENSORGUARD_STATE_DIR ?? stateDir(repoRoot(io.env));
  const dir = path.join(state, 'jobs', target, 'checkpoints');
  if (!fs.existsSync(dir)) {
    throw new ReportTargetError(
      `no folder ${target} and no job ${target} in ${path.join(state, 'jobs')}; for a job whose spec set checkpoint.dir, give that folder`,
    );
  }
  return dir;
}
