// `npm run bench -- <name> [--quick] [args...]`: runs one benchmark from bench/src/benchmarks,
// prints its table and writes bench/results/<name>.json as
// {name, machine, startedAt, rows, summary}.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { formatTable } from './table.js';
import type { Benchmark } from './types.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');

function available(): string[] {
  return fs
    .readdirSync(path.join(here, 'benchmarks'))
    .filter((f) => /\.(js|ts)$/.test(f) && !f.endsWith('.d.ts') && !f.includes('.test.'))
    .map((f) => f.replace(/\.(js|ts)$/, ''))
    .sort();
}

export function machine(): Record<string, string | number> {
  const cpus = os.cpus();
  return {
    hostname: os.hostname(),
    platform: `${os.platform()}-${os.arch()}`,
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
  };
}

async function main(argv: string[]): Promise<number> {
  const name = argv.find((a) => !a.startsWith('--'));
  const names = available();
  if (!name || !names.includes(name)) {
    process.stderr.write(
      `${name ? `unknown benchmark "${name}"` : 'no benchmark named'}; choose one of: ${names.join(', ')}\n` +
        'usage: npm run bench -- <name> [--quick]\n',
    );
    return 2;
  }
  const mod = (await import(pathToFileURL(path.join(here, 'benchmarks', `${name}.js`)).href)) as {
    benchmark: Benchmark;
  };
  const startedAt = new Date().toISOString();
  const args = argv.filter((a) => a !== name);
  process.stdout.write(`${name}: ${mod.benchmark.description}\n`);
  const result = await mod.benchmark.run({
    quick: args.includes('--quick'),
    root,
    args,
    log: (line) => process.stderr.write(`  ${line}\n`),
  });
  process.stdout.write(formatTable(result.rows) + '\n\nsummary:\n');
  for (const [k, v] of Object.entries(result.summary)) process.stdout.write(`  ${k} = ${v}\n`);
  const out = path.join(root, 'bench', 'results', `${name}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(
    out,
    JSON.stringify(
      { name, machine: machine(), startedAt, rows: result.rows, summary: result.summary },
      null,
      2,
    ) + '\n',
  );
  process.stdout.write(`\nwrote ${path.relative(root, out)}\n`);
  return 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(
        `benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
      );
      process.exit(1);
    },
  );
}
