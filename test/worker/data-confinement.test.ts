// The coordinator never reads a training record: a job completes while, in the coordinator's own
// mount namespace, the training files are empty (bound over with /dev/null), so any read of a
// record there would fail. The workers read their shards as usual; the coordinator learns the
// record shape from the preset (or a header: loadTrainSchema) and evaluates on the test split.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fashionMnistDir } from '@tensorguard/worker';
import {
  address,
  killAll,
  startCoordinator,
  startWorker,
  tmpDir,
  writeConfig,
  type Proc,
} from './harness.js';

const TRAIN_FILES = ['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'].map((f) =>
  path.join(fashionMnistDir(), f),
);

/** Runs argv in a private mount namespace where the training files read as empty. */
function withoutTrainingData(): string[] {
  const mounts = TRAIN_FILES.map((f) => `mount --bind /dev/null '${f}'`).join(' && ');
  return ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', `${mounts} && exec "$@"`, 'sh'];
}

describe('worker + coordinator: the coordinator reads no training record', function () {
  this.timeout(240_000);

  it('in a mount namespace where the training files are empty, a read of them gets 0 bytes (the premise)', () => {
    const wrap = withoutTrainingData();
    const out = execFileSync(wrap[0]!, [...wrap.slice(1), 'wc', '-c', TRAIN_FILES[0]!], { encoding: 'utf8' });
    expect(out.trim().split(/\s+/)[0]).to.equal('0');
  });

  it('a job completes with the coordinator in that namespace, and its model learned', async () => {
    const dir = tmpDir('tg-confine-');
    const config = writeConfig(dir, { rounds: 6, evaluation: { everyRounds: 6 } });
    const procs: Proc[] = [];
    try {
      const coord = startCoordinator(config, { TENSORGUARD_JOIN_GRACE_MS: '500' }, [], withoutTrainingData());
      procs.push(coord);
      const addr = await address(coord);
      procs.push(...[0, 1, 2].map((i) => startWorker(config, i, addr)));
      const done = await coord.waitFor((l) => l.type === 'done', 180_000);
      expect(done.status, JSON.stringify(done)).to.equal('succeeded');
      expect(done.rounds).to.equal(6);
      expect(done.test_accuracy as number).to.be.above(0.3); // 10 classes: chance is 0.1
    } finally {
      killAll(procs);
    }
  });
});
