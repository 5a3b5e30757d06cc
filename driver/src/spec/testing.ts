// A valid job spec for tests (in this package and in test/ray): 3 workers on Fashion-MNIST.
import type { JobSpecInput } from './schema.js';

export function validSpecInput(): JobSpecInput {
  return {
    name: 'fashion-dp',
    model: { kind: 'cnn-tanh' },
    dataset: { format: 'idx', preset: 'fashion-mnist' },
    workers: { count: 3, cpusPerWorker: 0.5 },
    privacy: { clipNorm: 1, noiseMultiplier: 1.1, epsilonBudget: 8, samplingRate: 0.01 },
    optimizer: { kind: 'sgd', learningRate: 0.1 },
    rounds: 10,
  };
}
