import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  chartData,
  escapeHtml,
  formatEpsilon,
  JobReportError,
  loadJobReport,
  renderJobReport,
} from './html.js';
import { readRoundMetrics, RoundMetricsLog, type RoundMetrics } from './metrics-log.js';

const line = (round: number, over: Partial<RoundMetrics> = {}): RoundMetrics => ({
  round,
  rounds_total: 3,
  epsilon: 0.5 * round,
  epsilon_budget: 2,
  delta: 1e-5,
  round_seconds: 0.2,
  phase_seconds: { aggregate: 0.1, unmask: 0.05, apply: 0.01 },
  bytes_received: 1000,
  bytes_sent: 500,
  workers_total: 3,
  workers_members: 3,
  workers_alive: 3,
  dropouts: 0,
  eval_accuracy: null,
  eval_loss: null,
  time: '2026-01-01T00:00:00Z',
  ...over,
});

describe('job report: metrics.jsonl and the HTML builder', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-report-unit-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('a torn last line is skipped, closed before the next append, and a repeated round keeps its later line', () => {
    const file = path.join(dir, 'metrics.jsonl');
    const log = new RoundMetricsLog(file);
    log.append(line(1));
    fs.appendFileSync(file, '{"round": 2, "epsi'); // a crash mid-line
    log.append(line(2));
    log.append(line(2, { eval_accuracy: 0.7 }));
    const { rounds, skipped } = readRoundMetrics(file);
    expect(skipped).to.equal(1);
    expect(rounds.map((r) => [r.round, r.eval_accuracy])).to.deep.equal([
      [1, null],
      [2, 0.7],
    ]);
    expect(fs.statSync(file).mode & 0o777).to.equal(0o600);
  });

  it('chart data has one value per round; an infinite ε is flagged, never charted as a number', () => {
    const d = chartData([
      line(1, { phase_seconds: { keys: 0.01, aggregate: 0.1, zeta: 0.2 } }),
      line(2, { epsilon: 'Infinity', eval_accuracy: 0.5, eval_loss: 1.2 }),
    ]);
    expect(d.rounds).to.deep.equal([1, 2]);
    expect(d.epsilon).to.deep.equal([0.5, null]);
    expect(d.epsilonInfinite).to.equal(true);
    expect(d.budget).to.equal(2);
    expect(d.phases).to.deep.equal(['keys', 'aggregate', 'unmask', 'apply', 'zeta']);
    expect(d.phaseSeconds.map((s) => s.length)).to.deep.equal([2, 2, 2, 2, 2]);
    expect(d.evalLoss).to.deep.equal([null, 1.2]);
  });

  it('formats ε (∞ for infinite, never 0) and escapes HTML', () => {
    expect(formatEpsilon('Infinity')).to.equal('∞');
    expect(formatEpsilon(Infinity)).to.equal('∞');
    expect(formatEpsilon(1.23456789)).to.equal('1.23457');
    expect(formatEpsilon(undefined)).to.equal('–');
    expect(escapeHtml(`<a href="x" title='y'>&</a>`)).to.equal(
      '&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;',
    );
  });

  it('the page holds no closing script tag from the data and inlines uPlot (no external resource)', () => {
    fs.writeFileSync(path.join(dir, 'metrics.jsonl'), JSON.stringify(line(1)) + '\n');
    fs.writeFileSync(
      path.join(dir, 'privacy-report.json'),
      JSON.stringify({ job: '</script><script>alert(1)</script>', epsilon: 0.5, delta: 1e-5 }),
    );
    const html = renderJobReport(loadJobReport(dir));
    expect(html).not.to.include('<script>alert(1)');
    expect(html.match(/<script/g)).to.have.length(3);
    expect(html).not.to.match(/<(script|link|img)[^>]+(src|href)=/);
    expect(html).to.include('uPlot');
  });

  it('names what is wrong: a folder of no job, a privacy report that is not JSON', () => {
    expect(() => loadJobReport(dir)).to.throw(
      JobReportError,
      /holds neither metrics\.jsonl nor privacy-report\.json/,
    );
    fs.writeFileSync(path.join(dir, 'privacy-report.json'), '{"epsilon": ');
    expect(() => loadJobReport(dir)).to.throw(JobReportError, /privacy-report\.json is not valid JSON/);
    expect(() => loadJobReport(path.join(dir, 'nope'))).to.throw(JobReportError, /is not a folder/);
  });
});
