// The Ray job's shell command as a node of the cluster runs it (sh, like Ray's job supervisor):
// without TENSORGUARD_RAY_PYTHON it picks the repository's .venv there, else `python` on PATH.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { entrypointCommand } from './job.js';
import type { RunConfigJson } from '../spec/resolve.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const config = { name: "it's quoted" } as unknown as RunConfigJson;

/** Runs the command with `--help` first (argparse answers before Ray is touched). */
function runOnNode(cmd: string, env: NodeJS.ProcessEnv) {
  const help = cmd.replace('-m tensorguard_ray.entrypoint ', '-m tensorguard_ray.entrypoint --help ');
  expect(help).not.to.equal(cmd);
  return spawnSync('sh', ['-c', help], { encoding: 'utf8', env, timeout: 60_000 });
}

describe('entrypointCommand', function () {
  this.timeout(60_000);
  let fakeBin: string;
  before(() => {
    // A `python` on PATH that only says it ran: the fallback when the node has no .venv.
    fakeBin = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-fake-python-'));
    fs.writeFileSync(path.join(fakeBin, 'python'), '#!/bin/sh\necho "fallback python $*"\n', { mode: 0o755 });
  });
  after(() => fs.rmSync(fakeBin, { recursive: true, force: true }));

  const cases: { name: string; python?: () => string; tgRoot: () => string; want: RegExp }[] = [
    {
      name: "the repository's .venv on the node, with no TENSORGUARD_RAY_PYTHON",
      tgRoot: () => root,
      want: /usage: python -m tensorguard_ray\.entrypoint/,
    },
    {
      name: '`python` on PATH when the node has no .venv',
      tgRoot: () => fakeBin,
      want: /^fallback python -m tensorguard_ray\.entrypoint --help --spec-json \{"name":"it's quoted"\}$/m,
    },
    {
      name: 'the python given (TENSORGUARD_RAY_PYTHON), over the .venv',
      python: () => path.join(fakeBin, 'python'),
      tgRoot: () => root,
      want: /^fallback python -m tensorguard_ray\.entrypoint --help/m,
    },
  ];
  for (const c of cases) {
    it(`runs ${c.name}`, () => {
      const res = runOnNode(entrypointCommand(config, c.python?.()), {
        // a node's PATH without the venv: the system's python has no tensorguard_ray
        PATH: `${fakeBin}:/usr/bin:/bin`,
        TENSORGUARD_ROOT: c.tgRoot(),
      });
      expect(res.status, res.stderr).to.equal(0);
      expect(res.stdout).to.match(c.want);
      expect(res.stderr).not.to.include('No module named');
    });
  }
});
