#!/usr/bin/env node
// Runs every suite of `npm test` in order and prints, as its last line, `N passed, N failed`
// summed over all of them. Exits non-zero when anything failed.
//
// Suites: lint, the generated-code checks (proto, the run config's JSON schema), mocha in each
// workspace (unit tests next to the code), mocha in test/ (integration), pytest in ray-cluster/,
// and the helm chart checks. A suite that cannot report counts (lint, checks) counts as one test.
//
//   node scripts/test.mjs [--only NAME[,NAME]]   run only the named suites (see SUITES below)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const mocha = path.join(root, 'node_modules', '.bin', 'mocha');

/** @type {{name: string, cmd: string, args: string[], cwd: string, parse: 'mocha'|'pytest'|'check'}[]} */
const SUITES = [
  { name: 'lint', cmd: 'npm', args: ['run', '--silent', 'lint'], cwd: root, parse: 'check' },
  {
    name: 'proto-check',
    cmd: 'node',
    args: ['proto/scripts/generate.mjs', '--check'],
    cwd: root,
    parse: 'check',
  },
  {
    name: 'run-config-schema-check',
    cmd: 'node',
    args: ['worker-ts/scripts/run-config-schema.mjs', '--check'],
    cwd: root,
    parse: 'check',
  },
  ...['proto', 'dp', 'secure-agg', 'worker-ts', 'driver', 'bench'].map((ws) => ({
    name: ws,
    cmd: mocha,
    // Specs are given here, not in .mocharc.json: mocha adds a config's spec to any file named
    // on the command line, so `npx mocha path/one.test.ts` would run everything.
    args: ['src/**/*.test.ts'],
    cwd: path.join(root, ws),
    parse: 'mocha',
  })),
  { name: 'integration', cmd: mocha, args: ['**/*.test.ts'], cwd: path.join(root, 'test'), parse: 'mocha' },
  {
    name: 'ray-cluster',
    cmd: path.join(root, '.venv', 'bin', 'python'),
    args: ['-m', 'pytest', '-q', '--color=no', '-p', 'no:cacheprovider'],
    cwd: path.join(root, 'ray-cluster'),
    parse: 'pytest',
  },
  { name: 'helm', cmd: 'bash', args: ['helm/test/check.sh'], cwd: root, parse: 'check' },
];

function runSuite(suite) {
  return new Promise((resolve) => {
    const child = spawn(suite.cmd, suite.args, {
      cwd: suite.cwd,
      env: {
        ...process.env,
        FORCE_COLOR: '0',
        TF_CPP_MIN_LOG_LEVEL: process.env.TF_CPP_MIN_LOG_LEVEL ?? '2',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const tee = (stream) => (chunk) => {
      out += chunk;
      stream.write(chunk);
    };
    child.stdout.on('data', tee(process.stdout));
    child.stderr.on('data', tee(process.stderr));
    child.on('error', (err) => resolve({ code: 127, out: String(err) }));
    child.on('close', (code) => resolve({ code: code ?? 1, out }));
  });
}

function count(suite, { code, out }) {
  const num = (re) => {
    const m = out.match(re);
    return m ? Number(m[1]) : 0;
  };
  if (suite.parse === 'mocha') {
    const passed = num(/^\s*(\d+) passing/m);
    const failed = num(/^\s*(\d+) failing/m);
    // A crash before mocha's summary (a syntax error, say) is one failure, not zero tests.
    return { passed, failed: code !== 0 && failed === 0 ? 1 : failed };
  }
  if (suite.parse === 'pytest') {
    const passed = num(/(\d+) passed/);
    const failed = num(/(\d+) failed/) + num(/(\d+) errors?/);
    return { passed, failed: code !== 0 && failed === 0 ? 1 : failed };
  }
  return code === 0 ? { passed: 1, failed: 0 } : { passed: 0, failed: 1 };
}

const onlyArg = process.argv.indexOf('--only');
const only = onlyArg >= 0 ? new Set(process.argv[onlyArg + 1].split(',')) : null;
const rows = [];
for (const suite of SUITES) {
  if (only && !only.has(suite.name)) continue;
  if (suite.parse === 'mocha' && !fs.existsSync(path.join(suite.cwd, '.mocharc.json'))) continue;
  process.stdout.write(`\n=== ${suite.name} ===\n`);
  const t0 = performance.now();
  const res = await runSuite(suite);
  rows.push({ name: suite.name, ...count(suite, res), seconds: (performance.now() - t0) / 1000 });
}
let passed = 0;
let failed = 0;
process.stdout.write('\n=== summary ===\n');
for (const r of rows) {
  passed += r.passed;
  failed += r.failed;
  process.stdout.write(
    `${r.name.padEnd(14)} ${String(r.passed).padStart(5)} passed ${String(r.failed).padStart(4)} failed ${r.seconds.toFixed(1).padStart(7)} s\n`,
  );
}
process.stdout.write(`${passed} passed, ${failed} failed\n`);
process.exit(failed > 0 ? 1 : 0);
