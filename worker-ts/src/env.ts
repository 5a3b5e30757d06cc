// Imported first by the bins, before anything loads @tensorflow/tfjs-node: libtensorflow reads
// its thread-pool sizes and log level from the environment once, when it is loaded.
process.env.TF_CPP_MIN_LOG_LEVEL ??= '2';
if (process.env.TF_NUM_INTRAOP_THREADS === '') delete process.env.TF_NUM_INTRAOP_THREADS;
if (process.env.TF_NUM_INTEROP_THREADS === '') delete process.env.TF_NUM_INTEROP_THREADS;
export {};
