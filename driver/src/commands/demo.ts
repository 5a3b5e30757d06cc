// `tensorguard demo`: the quick-start run. Until the Ray path lands this is a real,
// single-process training of the tanh CNN on Fashion-MNIST on the native backend.
import { type Command, UsageError } from './types.js';

export const command: Command = {
  name: 'demo',
  summary: 'train the quick-start model on Fashion-MNIST and print its test accuracy',
  usage: [
    'usage: tensorguard demo [--full] [--json]',
    '',
    'Trains the tanh CNN (Papernot et al. 2020) on Fashion-MNIST with the native TensorFlow backend.',
    '  --full   all 60000 training examples for 3 epochs (default: 10000 examples, 1 epoch)',
    '  --json   last output line is one JSON object with the result',
  ].join('\n'),
  async run(args, io) {
    const bad = args.filter((a) => a !== '--full' && a !== '--json');
    if (bad.length) throw new UsageError(`unknown option ${bad[0]}`);
    const full = args.includes('--full');
    const json = args.includes('--json');
    // Loaded on use so that other commands never pay for libtensorflow.
    const { fashionMnistDir, trainLocal } = await import('@tensorguard/worker');
    const dataDir = fashionMnistDir(io.env);
    const log = json ? () => {} : (line: string) => io.stdout(`demo: ${line}\n`);
    log(`training the tanh CNN on Fashion-MNIST from ${dataDir}`);
    const r = await trainLocal({ dataDir, trainExamples: full ? 60_000 : 10_000, epochs: full ? 3 : 1, log });
    if (json) {
      io.stdout(
        JSON.stringify({
          backend: r.backend,
          test_accuracy: r.testAccuracy,
          train_examples: r.trainExamples,
          seconds: r.seconds,
        }) + '\n',
      );
    } else {
      log(`backend ${r.backend}; ${r.trainExamples} training examples in ${r.seconds.toFixed(1)} s`);
      log(`test accuracy ${(100 * r.testAccuracy).toFixed(2)}% on 10000 test images`);
    }
    return r.testAccuracy > 0.5 ? 0 : 1;
  },
};
