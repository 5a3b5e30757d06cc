#!/usr/bin/env node
// Writes the JSON schema of the run config (worker-ts/src/run-config/schema.ts, zod's
// z.toJSONSchema, input side: fields with defaults are optional and carry `default`) to
// ray-cluster/tensorguard_ray/_internal/run_config.schema.json, which the Ray side validates
// against (spec.py). With --check it writes nothing and fails when the committed file is stale.
//
//   node worker-ts/scripts/run-config-schema.mjs [--check]
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tsImport } from 'tsx/esm/api';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const OUT = path.join(root, 'ray-cluster', 'tensorguard_ray', '_internal', 'run_config.schema.json');

const { runConfigJsonSchemaText } = await tsImport('../src/run-config/schema.ts', import.meta.url);
const text = runConfigJsonSchemaText();

if (process.argv.includes('--check')) {
  const have = fs.existsSync(OUT) ? fs.readFileSync(OUT, 'utf8') : '';
  if (have !== text) {
    console.error(
      `${path.relative(root, OUT)} is stale: it differs from worker-ts/src/run-config/schema.ts; run node worker-ts/scripts/run-config-schema.mjs and commit the result`,
    );
    process.exit(1);
  }
  console.log(`${path.relative(root, OUT)} is up to date`);
} else {
  fs.writeFileSync(OUT, text);
  console.log(`wrote ${path.relative(root, OUT)}`);
}
