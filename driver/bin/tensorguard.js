#!/usr/bin/env node
// The `tensorguard` command that npm links into node_modules/.bin. It is committed (not built)
// because `npm ci` links bins before `tsc -b` has written driver/dist: a bin pointing into dist
// would not be linked at all. It only loads the built CLI, or says how to build it.
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

const cli = new URL('../dist/bin/tensorguard.js', import.meta.url);
if (!fs.existsSync(fileURLToPath(cli))) {
  process.stderr.write(
    `tensorguard: ${fileURLToPath(cli)} is not built yet: run \`node scripts/setup.mjs\` (or \`npx tsc -b\`) in the repository\n`,
  );
  process.exit(1);
}
await import(cli.href);
