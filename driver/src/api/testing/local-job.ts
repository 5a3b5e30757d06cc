// The program LocalProcessBackend runs for each job: a real Node process that prints the
// coordinator's metric-line contract to stdout, one round every `roundMs`, with the ε of each
// round computed beforehand by the real RDP accountant (accounting.ts). It trains nothing: the
// eval_accuracy and eval_loss it prints are synthetic. Used for API tests and benchmarks without Ray.
//
// usage: node local-job.js <job-dir>   (reads <job-dir>/job.json, writes <job-dir>/exit.json)
import fs from 'node:fs';
import path from 'node:path';
import { stringifyKeepingNonFinite } from '../edge/json-numbers.js';

export interface LocalJobFile {
  jobId: string;
  rounds: number;
  /** ε after round r at index r-1 ("Infinity" in the file when there is no noise). */
  epsilons: Array<number | string>;
  delta: number;
  evalEveryRounds: number;
  roundMs: number;
  /** Exit with a failure after this round (tests of FAILED jobs); null = never. */
  failAfterRound: number | null;
}

function main(): void {
  const dir = process.argv[2];
  if (!dir) {
    process.stderr.write('usage: local-job <job-dir>\n');
    process.exit(2);
  }
  const job = JSON.parse(fs.readFileSync(path.join(dir, 'job.json'), 'utf8')) as LocalJobFile;
  const emit = (o: Record<string, unknown>) => process.stdout.write(stringifyKeepingNonFinite(o) + '\n');
  const finish = (status: 'succeeded' | 'failed' | 'stopped', code: number) => {
    fs.writeFileSync(path.join(dir, 'exit.json.tmp'), JSON.stringify({ status, code }));
    fs.renameSync(path.join(dir, 'exit.json.tmp'), path.join(dir, 'exit.json'));
    process.exit(code);
  };
  process.on('SIGTERM', () => finish('stopped', 143));
  emit({ type: 'log', message: `local job ${job.jobId} starting: ${job.rounds} rounds` });
  let round = 0;
  const tick = () => {
    round += 1;
    const evaluate = round % job.evalEveryRounds === 0 || round === job.rounds;
    emit({
      type: 'metrics',
      round,
      rounds_total: job.rounds,
      epsilon: job.epsilons[round - 1],
      delta: job.delta,
      eval_accuracy: evaluate ? Number((0.5 + (0.4 * round) / job.rounds).toFixed(4)) : null,
      eval_loss: evaluate ? Number((1.5 - round / job.rounds).toFixed(4)) : null,
    });
    if (job.failAfterRound !== null && round >= job.failAfterRound) {
      emit({ type: 'done', status: 'failed', error: `injected failure after round ${round}`, rounds: round });
      finish('failed', 1);
    }
    if (round >= job.rounds) {
      emit({
        type: 'done',
        status: 'succeeded',
        epsilon: job.epsilons[round - 1],
        delta: job.delta,
        rounds: round,
        stop_reason: `completed ${round} rounds`,
      });
      finish('succeeded', 0);
    }
    setTimeout(tick, job.roundMs);
  };
  setTimeout(tick, job.roundMs);
}

main();
