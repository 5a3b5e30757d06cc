// Errors reach the user as one clear line (issue 18): a job that fails on bad input ends, through
// the real `tensorguard train` on a private Ray head, in `job <id> failed: <the cause>` naming
// the file and the problem, with no Python traceback and no ANSI colour codes, and a pointer to
// the full log. Each row is one real Ray job (the Node coordinator is the first to read both the
// test set and the checkpoint, so the cause is its error). Build first: `npx tsc -b`.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { cli } from '../ray/harness.js';

interface Row {
  name: string;
  /** Writes the job's input files into `dir`; returns the spec's dataset and checkpoint lines. */
  prepare: (dir: string) => { dataset: string; checkpointDir: string };
  /** What the error line must say (file and problem). */
  want: (dir: string) => RegExp;
}

const csv = (rows: string[]) => ['a,b,label', ...rows].join('\n') + '\n';
const goodRows = Array.from({ length: 20 }, (_, i) => `0.${i % 10},0.${(i * 3) % 10},${i % 2}`);

const rows: Row[] = [
  {
    name: 'a malformed CSV (a non-number cell on line 6)',
    prepare: (dir) => {
      const file = path.join(dir, 'bad.csv');
      fs.writeFileSync(file, csv([...goodRows.slice(0, 4), '0.5,secret-value,1', ...goodRows.slice(4)]));
      return {
        dataset: `{ format: csv, path: ${file}, testPath: ${file}, numClasses: 2 }`,
        checkpointDir: path.join(dir, 'ckpt-csv'),
      };
    },
    want: (dir) => new RegExp(`DatasetError: ${path.join(dir, 'bad.csv')}:6: `),
  },
  {
    name: 'a corrupt checkpoint to resume from (a manifest that is not JSON)',
    prepare: (dir) => {
      const file = path.join(dir, 'good.csv');
      fs.writeFileSync(file, csv(goodRows));
      const ckpt = path.join(dir, 'ckpt-corrupt');
      fs.mkdirSync(path.join(ckpt, 'round-000001'), { recursive: true });
      fs.writeFileSync(path.join(ckpt, 'LATEST'), 'round-000001\n');
      fs.writeFileSync(path.join(ckpt, 'round-000001', 'manifest.json'), '{"round": 1, "files": ');
      fs.writeFileSync(path.join(ckpt, 'round-000001', 'model.safetensors'), 'garbage');
      return {
        dataset: `{ format: csv, path: ${file}, testPath: ${file}, numClasses: 2 }`,
        checkpointDir: ckpt,
      };
    },
    want: (dir) => new RegExp(`CheckpointError: .*${path.join(dir, 'ckpt-corrupt')}`),
  },
];

/** Every file under `dir` with its contents, to show that a failed job lost nothing saved. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) {
      const p = path.join(e.parentPath, e.name);
      out[path.relative(dir, p)] = fs.readFileSync(p, 'base64');
    }
  }
  return out;
}

describe('hostile: a failed job tells the user why, on one line (real Ray jobs)', function () {
  this.timeout(300_000);
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-hostile-errors-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  for (const row of rows) {
    it(`train with ${row.name}`, async () => {
      const { dataset, checkpointDir } = row.prepare(dir);
      const before = fs.existsSync(checkpointDir) ? snapshot(checkpointDir) : {};
      const spec = path.join(dir, `${row.name.replace(/\W+/g, '-')}.yaml`);
      fs.writeFileSync(
        spec,
        [
          'name: hostile-errors',
          'model: { kind: mlp, hidden: [4] }',
          `dataset: ${dataset}`,
          'workers: { count: 2, cpusPerWorker: 0.5, maxRestarts: 0 }',
          'coordinator: { cpus: 0.5 }',
          'privacy: { clipNorm: 1, noiseMultiplier: 1.1, epsilonBudget: 30, samplingRate: 0.5 }',
          'secureAggregation: { mode: masking, threshold: 2 }',
          'optimizer: { kind: sgd, learningRate: 0.5 }',
          'rounds: 2',
          `checkpoint: { dir: ${checkpointDir}, everyRounds: 1 }`,
        ].join('\n') + '\n',
      );
      const run = cli(['train', spec]);
      const code = await run.done;
      expect(code, run.stderr).to.equal(1);

      const out = run.stdout.trim().split('\n');
      expect(out, run.stdout).to.have.length(1);
      const line = out[0]!;
      expect(line).to.match(/^job hostile-errors-\w+ failed: /);
      expect(line).to.match(row.want(dir));
      for (const text of [run.stdout, run.stderr]) {
        expect(text).not.to.include('\x1b');
        expect(text).not.to.include('Traceback');
        expect(text).not.to.match(/File ".*", line \d+/);
        expect(text).not.to.include('atexit');
        expect(text).not.to.include('secret-value');
      }
      // The full log is kept where the user is told.
      const log = /^full log: (.+)$/m.exec(run.stderr)?.[1];
      expect(log, run.stderr).to.be.a('string');
      expect(fs.readFileSync(log!, 'utf8')).to.match(/DatasetError|CheckpointError/);
      fs.rmSync(log!, { force: true });
      // Nothing saved was lost: the checkpoint directory is as it was.
      if (Object.keys(before).length > 0) expect(snapshot(checkpointDir)).to.deep.equal(before);
    });
  }
});
