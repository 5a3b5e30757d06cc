#!/usr/bin/env node
// node worker-ts/dist/bin/coordinator.js --config <job.json> [--tls-dir DIR] [--listen HOST[:PORT]]
// The program is coordinator/program.ts; see there and worker-ts/README.md for its output.
import '../env.js';
import { runCoordinatorProgram } from '../coordinator/program.js';

runCoordinatorProgram(process.argv.slice(2));
