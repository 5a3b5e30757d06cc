// The coordinator program with one fault injected from the test side: `--crash-after-release N`
// SIGKILLs the process right after its N-th round was released and applied, before that round's
// checkpoint (CoordinatorHooks.afterApply). The crash-consistency test (faults.test.ts) runs it;
// the production program has no such hook in its release path.
import { runCoordinatorProgram } from '@tensorguard/worker';

const argv = process.argv.slice(2);
const i = argv.indexOf('--crash-after-release');
const n = Number(argv[i + 1]);
if (i < 0 || !Number.isInteger(n) || n < 1) {
  process.stderr.write('usage: crash-after-release.ts --crash-after-release N <coordinator arguments>\n');
  process.exit(2);
}
argv.splice(i, 2);
runCoordinatorProgram(argv, {
  afterApply: (released) => {
    if (released === n) process.kill(process.pid, 'SIGKILL');
  },
});
