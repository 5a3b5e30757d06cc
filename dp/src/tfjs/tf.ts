// The one place that loads TensorFlow.js, so that the native binding can be switched without
// touching the engine: TENSORGUARD_TFJS_VARIANT=gpu loads @tensorflow/tfjs-node-gpu (CUDA),
// anything else @tensorflow/tfjs-node (CPU). Both packages expose the same API, so the CPU
// package's types describe either. The choice is read once, when this module is first imported;
// TensorFlow's thread pools (TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS) are likewise fixed
// by the first import in the process.
import { createRequire } from 'node:module';
import type * as TfjsNode from '@tensorflow/tfjs-node';

type Tfjs = typeof TfjsNode;

/** Which native binding to load, from TENSORGUARD_TFJS_VARIANT ('gpu' or anything else for CPU). */
export const tfjsVariant: 'cpu' | 'gpu' = process.env.TENSORGUARD_TFJS_VARIANT === 'gpu' ? 'gpu' : 'cpu';

const require = createRequire(import.meta.url);

const tf: Tfjs = require(
  tfjsVariant === 'gpu' ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node',
) as Tfjs;

export default tf;
export type Tensor = TfjsNode.Tensor;
export type Tensor4D = TfjsNode.Tensor4D;
export type Tensor1D = TfjsNode.Tensor1D;
export type Scalar = TfjsNode.Scalar;

/**
 * Runs f in a tf.tidy scope that disposes every tensor f creates except those it tf.keep()s, and
 * returns f's result as is (tf.tidy itself only returns tensor containers).
 */
export function scoped<T>(f: () => T): T {
  let out: { v: T } | undefined;
  tf.tidy(() => {
    out = { v: f() };
  });
  return out!.v;
}
