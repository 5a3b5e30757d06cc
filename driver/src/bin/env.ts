// Imported first by the CLI: TensorFlow reads these once, when libtensorflow loads.
process.env.TF_CPP_MIN_LOG_LEVEL ??= '2';
