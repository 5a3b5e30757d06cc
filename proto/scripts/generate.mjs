#!/usr/bin/env node
// Generates TypeScript for @grpc/grpc-js from proto/tensorguard/**.proto with buf + ts-proto
// into proto/src/gen/. With --check it generates into a temporary folder and fails when the
// committed code differs, so CI catches a .proto edited without regenerating.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const protoDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const root = path.resolve(protoDir, '..');
const committed = path.join(protoDir, 'src', 'gen');
const check = process.argv.includes('--check');

function listFiles(dir, base = dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? listFiles(p, base) : [path.relative(base, p)];
  });
}

export function generate(out) {
  const template = fs.readFileSync(path.join(protoDir, 'buf.gen.yaml'), 'utf8');
  const tmpTemplate = path.join(os.tmpdir(), `tg-buf-gen-${process.pid}.yaml`);
  fs.writeFileSync(
    tmpTemplate,
    template.replace('GEN_OUT', out).replace('../node_modules', path.join(root, 'node_modules')),
  );
  try {
    const res = spawnSync(
      path.join(root, 'node_modules', '.bin', 'buf'),
      ['generate', '--template', tmpTemplate],
      {
        cwd: protoDir,
        encoding: 'utf8',
      },
    );
    if (res.status !== 0) {
      throw new Error(`buf generate failed (${res.status}): ${res.stderr || res.error?.message}`);
    }
  } finally {
    fs.rmSync(tmpTemplate, { force: true });
  }
}

/** Returns the list of differences between two generated trees (empty when equal). */
export function diffTrees(a, b) {
  const fa = new Set(listFiles(a));
  const fb = new Set(listFiles(b));
  const diffs = [];
  for (const f of fa) if (!fb.has(f)) diffs.push(`only in ${path.relative(root, a)}: ${f}`);
  for (const f of fb) if (!fa.has(f)) diffs.push(`only in ${path.relative(root, b) || b}: ${f}`);
  for (const f of fa) {
    if (fb.has(f) && !fs.readFileSync(path.join(a, f)).equals(fs.readFileSync(path.join(b, f))))
      diffs.push(`differs: ${f}`);
  }
  return diffs;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (check) {
    const fresh = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-proto-'));
    try {
      generate(fresh);
      const diffs = diffTrees(committed, fresh);
      if (diffs.length > 0) {
        process.stderr.write(
          `proto/src/gen is out of date with proto/tensorguard:\n  ${diffs.join('\n  ')}\nRun \`npm run proto:gen\` and commit the result.\n`,
        );
        process.exit(1);
      }
      process.stdout.write('proto/src/gen matches a fresh generation\n');
    } finally {
      fs.rmSync(fresh, { recursive: true, force: true });
    }
  } else {
    fs.rmSync(committed, { recursive: true, force: true });
    fs.mkdirSync(committed, { recursive: true });
    generate(committed);
    process.stdout.write(`generated ${listFiles(committed).length} files in proto/src/gen\n`);
  }
}
