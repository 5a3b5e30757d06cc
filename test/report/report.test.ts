// The job report end to end: a real short job (coordinator and workers over gRPC, the mlp on
// Fashion-MNIST) writes metrics.jsonl and report.html beside its checkpoints; `tensorguard report`
// rebuilds it; Debian's chromium (driven by playwright-core) opens it offline and the test reads
// the charts' data from the page. A screenshot lands in test/artifacts/ (ignored by git).
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import {
  address,
  killAll,
  ROOT,
  runJob,
  startCoordinator,
  startWorker,
  tmpDir,
  writeConfig,
  type Proc,
} from '../worker/harness.js';

const CHROMIUM = process.env.TENSORGUARD_CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = path.join(ROOT, 'test', 'artifacts');
const ROUNDS = 4;
const CHARTS = ['epsilon', 'eval', 'phases', 'bytes', 'workers'];

function tensorguard(args: string[]) {
  return spawnSync(process.execPath, [path.join(ROOT, 'driver', 'dist', 'bin', 'tensorguard.js'), ...args], {
    encoding: 'utf8',
    timeout: 120_000,
  });
}

/** Opens `file` and records console errors, page errors and every request that is not file://. */
async function open(browser: Browser, file: string) {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const errors: string[] = [];
  const remote: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('request', (r) => {
    if (!r.url().startsWith('file://')) remote.push(r.url());
  });
  await page.goto(`file://${file}`);
  await page.waitForFunction(() => (window as unknown as { tgReport?: unknown }).tgReport !== undefined);
  return { page, errors, remote };
}

/** Each chart's series lengths and values, as the uPlot instances in the page hold them. */
function chartSeries(page: Page) {
  return page.evaluate(() => {
    const charts = (
      window as unknown as { tgReport: { charts: Record<string, { data: (number | null)[][] }> } }
    ).tgReport.charts;
    return Object.fromEntries(Object.entries(charts).map(([k, u]) => [k, u.data]));
  });
}

describe('job report: metrics.jsonl, report.html and `tensorguard report` in headless chromium', function () {
  this.timeout(300_000);
  let browser: Browser;
  let dir: string;
  before(async () => {
    if (!fs.existsSync(CHROMIUM)) {
      throw new Error(
        `${CHROMIUM} is missing: run \`node scripts/setup.mjs\` (it installs Debian's chromium)`,
      );
    }
    browser = await chromium.launch({ executablePath: CHROMIUM });
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    dir = tmpDir('tg-report-');
  });
  after(async () => {
    await browser?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it(`a ${ROUNDS}-round job writes one metrics line per round and a report whose every chart has one point per round`, async () => {
    const file = writeConfig(dir, {
      name: 'report-e2e',
      workers: { count: 2 },
      dataset: { format: 'idx', preset: 'fashion-mnist', trainExamples: 200, testExamples: 200 },
      privacy: {
        clipNorm: 1,
        noiseMultiplier: 1,
        delta: 1e-5,
        epsilonBudget: 40,
        accountant: 'rdp',
        samplingRate: 0.25,
      },
      rounds: ROUNDS,
      evaluation: { everyRounds: 1 },
      checkpoint: { dir: path.join(dir, 'ckpt'), everyRounds: 2 },
    });
    const { done, coord } = await runJob(file, 2);
    expect(done.status).to.equal('succeeded');
    const ck = path.join(dir, 'ckpt');

    // The coordinator's stdout lines carry eval_loss beside eval_accuracy.
    const stdout = coord.lines.filter((l) => l.type === 'metrics');
    expect(stdout).to.have.length(ROUNDS);
    for (const l of stdout) {
      expect(l.eval_accuracy as number).to.be.within(0, 1);
      expect(l.eval_loss as number)
        .to.be.above(0)
        .and.below(10);
    }

    // metrics.jsonl: one line per released round, public aggregates only.
    const lines = fs
      .readFileSync(path.join(ck, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => l.round)).to.deep.equal([1, 2, 3, 4]);
    for (const [i, l] of lines.entries()) {
      expect(l.epsilon).to.equal(stdout[i]!.epsilon);
      expect(l.epsilon_budget).to.equal(40);
      expect(l.delta).to.equal(1e-5);
      expect(l.eval_loss).to.equal(stdout[i]!.eval_loss);
      expect(l.workers_members).to.equal(2);
      expect(l.workers_alive).to.equal(2);
      expect(l.dropouts).to.equal(0);
      // Each worker's masked vector alone is 4 or 8 bytes per parameter of the 784·16 + 16·10 + 26.
      expect(l.bytes_received as number).to.be.above(2 * 4 * 12_700);
      expect(l.bytes_sent as number).to.be.above(0);
      expect(Object.keys(l.phase_seconds as object)).to.include.members([
        'keys',
        'aggregate',
        'unmask',
        'apply',
        'evaluate',
      ]);
      // Nothing per worker: no field names a worker, no batch size or per-worker loss.
      expect(Object.keys(l).filter((k) => /worker_?\d|batch|clip/i.test(k))).to.deep.equal([]);
    }
    expect(JSON.parse(fs.readFileSync(path.join(ck, 'job-spec.json'), 'utf8')).name).to.equal('report-e2e');

    // The coordinator wrote report.html; `tensorguard report` rebuilds it elsewhere.
    expect(fs.existsSync(path.join(ck, 'report.html'))).to.equal(true);
    const out = path.join(ARTIFACTS, 'report-e2e.html');
    const res = tensorguard(['report', ck, '--out', out, '--json']);
    expect(res.status, res.stderr).to.equal(0);
    expect(JSON.parse(res.stdout)).to.deep.equal({ report: out, rounds: ROUNDS });

    for (const html of [path.join(ck, 'report.html'), out]) {
      const { page, errors, remote } = await open(browser, html);
      expect(errors).to.deep.equal([]);
      expect(remote, 'the report loads nothing from the network').to.deep.equal([]);
      const series = await chartSeries(page);
      expect(Object.keys(series)).to.have.members(CHARTS);
      for (const name of CHARTS) {
        // x plus each series: one point per round.
        for (const s of series[name]!) expect(s, name).to.have.length(ROUNDS);
        expect(
          await page.getAttribute(`[data-chart="${name}"]`, 'data-points'),
          `${name}'s data-points`,
        ).to.equal(String(ROUNDS));
        expect(await page.locator(`[data-chart="${name}"] canvas`).count(), `${name} is drawn`).to.equal(1);
      }
      expect(series.epsilon![0]).to.deep.equal([1, 2, 3, 4]);
      expect(series.epsilon![1]).to.deep.equal(lines.map((l) => l.epsilon));
      expect(series.epsilon![2]).to.deep.equal([40, 40, 40, 40]);
      expect(series.eval![1]).to.deep.equal(lines.map((l) => l.eval_accuracy));
      expect(series.eval![2]).to.deep.equal(lines.map((l) => l.eval_loss));
      expect(series.workers![2]).to.deep.equal([2, 2, 2, 2]);
      // The privacy certificate: ε, δ, the accounting parameters and the threat model.
      const cert = await page.locator('table.cert').innerText();
      for (const want of ['ε spent', 'δ', 'sampling rate q', 'clip norm C', 'noise multiplier σ', 'quorum t'])
        expect(cert).to.include(want);
      expect(await page.locator('p.threat').innerText()).to.match(
        /^Threat model\. the aggregator may be curious/,
      );
      expect(await page.locator('body').innerText()).to.include(path.join(ck, 'round-000004'));
      if (html === out)
        await page.screenshot({ path: path.join(ARTIFACTS, 'report-e2e.png'), fullPage: true });
      await page.close();
    }
  });

  it('a worker killed inside a round is a dropout of that round in metrics.jsonl and in the workers chart', async () => {
    const sub = path.join(dir, 'dropout');
    fs.mkdirSync(sub);
    const file = writeConfig(sub, {
      name: 'report-dropout',
      rounds: 3,
      roundTimeoutMs: 5000,
      evaluation: { everyRounds: 3 },
      dataset: { format: 'idx', preset: 'fashion-mnist', trainExamples: 150, testExamples: 100 },
    });
    const env = { TENSORGUARD_STAGE_TIMEOUT_MS: '4000', TENSORGUARD_JOIN_GRACE_MS: '1500' };
    const procs: Proc[] = [];
    try {
      const coord = startCoordinator(file, env);
      procs.push(coord);
      const addr = await address(coord);
      const ws = [0, 1, 2].map((i) => startWorker(file, i, addr));
      procs.push(...ws);
      // Once round 2 has opened with all three as members, worker 2 dies inside it.
      const opened = /"round":2,"members":\[[^\]]*\],[^\n]*"msg":"round opened"/;
      const deadline = Date.now() + 120_000;
      while (!opened.test(coord.stderr.join(''))) {
        if (Date.now() > deadline)
          throw new Error(`round 2 never opened: ${coord.stderr.join('').slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      ws[2]!.child.kill('SIGKILL');
      const done = await coord.waitFor((l) => l.type === 'done', 120_000);
      expect(done.status).to.equal('succeeded');
    } finally {
      killAll(procs);
    }
    const ck = path.join(sub, 'ckpt');
    const lines = fs
      .readFileSync(path.join(ck, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, number>);
    expect(lines.map((l) => [l.workers_members, l.workers_alive, l.dropouts])).to.deep.equal([
      [3, 3, 0],
      [3, 2, 1],
      [2, 2, 0],
    ]);
    const { page, errors } = await open(browser, path.join(ck, 'report.html'));
    expect(errors).to.deep.equal([]);
    const series = await chartSeries(page);
    expect(series.workers!.slice(1)).to.deep.equal([
      [3, 3, 2],
      [3, 2, 2],
      [0, 1, 0],
    ]);
    await page.close();
  });

  it('escapes what it shows and writes an infinite ε as ∞, never 0', async () => {
    const ck = path.join(dir, 'crafted');
    fs.mkdirSync(ck);
    const hostile = '</script><img src=x onerror="window.pwned=1"><script>window.pwned=2</script>';
    fs.writeFileSync(
      path.join(ck, 'metrics.jsonl'),
      [1, 2]
        .map((round) =>
          JSON.stringify({
            round,
            rounds_total: 2,
            epsilon: 'Infinity',
            epsilon_budget: null,
            delta: 1e-5,
            round_seconds: 0.1,
            phase_seconds: { aggregate: 0.05, [hostile]: 0.01 },
            bytes_received: 10,
            bytes_sent: 10,
            workers_total: 2,
            workers_members: 2,
            workers_alive: 2,
            dropouts: 0,
            eval_accuracy: null,
            eval_loss: null,
            time: '2026-01-01T00:00:00Z',
          }),
        )
        .join('\n') + '\n{"round": 3, "torn',
    );
    fs.writeFileSync(
      path.join(ck, 'privacy-report.json'),
      JSON.stringify({
        job: hostile,
        epsilon: 'Infinity',
        nonPrivate: true,
        delta: 1e-5,
        threatModel: hostile,
      }),
    );
    fs.writeFileSync(path.join(ck, 'job-spec.json'), JSON.stringify({ name: hostile }));
    const res = tensorguard(['report', ck]);
    expect(res.status, res.stderr).to.equal(0);
    expect(res.stdout).to.equal(`report of 2 round(s) written to ${path.join(ck, 'report.html')}\n`);
    const { page, errors, remote } = await open(browser, path.join(ck, 'report.html'));
    expect(errors).to.deep.equal([]);
    expect(remote).to.deep.equal([]);
    expect(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned)).to.equal(undefined);
    expect(await page.locator('img').count()).to.equal(0);
    expect(await page.locator('h1').innerText()).to.equal(`Job report: ${hostile}`);
    expect(await page.locator('td[data-field="epsilon"]').innerText()).to.equal('∞');
    expect(await page.locator('p.warning', { hasText: 'NOT DIFFERENTIALLY PRIVATE' }).count()).to.equal(1);
    expect(await page.locator('p.warning', { hasText: 'ε is ∞ (no noise)' }).count()).to.equal(1);
    expect(await page.locator('body').innerText()).to.include('1 unreadable line(s) of metrics.jsonl');
    const series = await chartSeries(page);
    for (const name of CHARTS) for (const s of series[name]!) expect(s, name).to.have.length(2);
    await page.close();
  });

  it('`tensorguard report` names what is missing: an unknown job id, a folder of no job', () => {
    const unknown = tensorguard(['report', 'no-such-job-123']);
    expect(unknown.status).to.equal(1);
    expect(unknown.stderr).to.match(
      /^tensorguard report: no folder no-such-job-123 and no job no-such-job-123 in /,
    );
    const empty = path.join(dir, 'empty');
    fs.mkdirSync(empty);
    const none = tensorguard(['report', empty]);
    expect(none.status).to.equal(1);
    expect(none.stderr).to.equal(
      `tensorguard report: ${empty} holds neither metrics.jsonl nor privacy-report.json: not the checkpoint.dir of a job that released a round\n`,
    );
    const usage = tensorguard(['report']);
    expect(usage.status).to.equal(2);
    expect(usage.stderr).to.include('expected one job id or checkpoint folder');
  });
});
