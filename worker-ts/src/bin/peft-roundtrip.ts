#!/usr/bin/env node
// node worker-ts/dist/bin/peft-roundtrip.js [--adapter <dir>] [--model <HF folder>] [--python <path>]
// Loads a TensorGuard hf-bert adapter with Python PEFT and prints one JSON line:
// {"peft_roundtrip_max_abs_diff": ..., "sentences": 16, "adapterDir": ...}. Without --model it
// uses model.preset all-minilm-l6-v2 (fetched when missing); without --adapter a random one.
import '../env.js';
import { parseArgs } from './args.js';

const args = parseArgs(process.argv.slice(2), ['adapter', 'model', 'python']);
const { resolveModelPreset } = await import('../hf/presets.js');
const { peftRoundTrip } = await import('../models/peft-roundtrip.js');
const modelDir = args.model ?? (await resolveModelPreset('all-minilm-l6-v2'));
const res = peftRoundTrip({
  modelDir,
  ...(args.adapter ? { adapterDir: args.adapter } : {}),
  ...(args.python ? { python: args.python } : {}),
});
process.stdout.write(JSON.stringify(res) + '\n');
