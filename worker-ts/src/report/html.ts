// The job report: one self-contained HTML file (report.html next to the checkpoints) with the
// job's per-round charts, its privacy certificate, its resolved spec and where its outputs are.
//
// Built only from files the job leaves in its checkpoint folder (metrics.jsonl, privacy-report.json,
// job-spec.json, the checkpoints), so `tensorguard report` can rebuild it at any later time. The
// charts are uPlot's (npm `uplot`), whose JS and CSS are inlined: the file opens offline and loads
// nothing. Everything taken from those files is escaped; the chart data travels as a JSON script
// block whose `<` are written \u003c, so no value can close the block or open a tag.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { latestCheckpointDir } from '../checkpoint/store.js';
import { writeFileAtomic } from '../checkpoint/atomic.js';
import { METRICS_FILE, MetricsFileError, readRoundMetrics, type RoundMetrics } from './metrics-log.js';

export const REPORT_FILE = 'report.html';
export const PRIVACY_REPORT_FILE = 'privacy-report.json';
/** The job's resolved spec, as the coordinator received it. */
export const JOB_SPEC_FILE = 'job-spec.json';
/** LoRA adapters, when the job writes them. */
export const ADAPTER_DIR = 'adapter';

/** What a report is built from; `loadJobReport` reads it from a checkpoint folder. */
export interface JobReportInput {
  checkpointDir: string;
  /** metrics.jsonl, one entry per released round, sorted. */
  rounds: RoundMetrics[];
  /** privacy-report.json, when the job wrote one. */
  privacy: Record<string, unknown> | null;
  /** job-spec.json, when present. */
  spec: unknown;
  /** The latest checkpoint folder, or null. */
  checkpoint: string | null;
  /** `<checkpointDir>/adapter`, when it exists. */
  adapter: string | null;
  /** Lines of metrics.jsonl that could not be read (a crash's torn line). */
  skippedLines: number;
  /** ISO time the report was built. */
  generatedAt: string;
}

/** Thrown when a folder holds nothing a report can be built from. */
export class JobReportError extends Error {
  override name = 'JobReportError';
}

function readJson(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new JobReportError(`cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new JobReportError(
      `${file} is not valid JSON (${err instanceof Error ? err.message : String(err)}); rebuild it by rerunning the job, or delete it to leave that section out`,
    );
  }
}

/**
 * Reads what a report needs from a job's checkpoint folder. Throws JobReportError when the folder
 * does not exist or holds neither metrics.jsonl nor privacy-report.json (not a job's folder).
 */
export function loadJobReport(checkpointDir: string): JobReportInput {
  const dir = path.resolve(checkpointDir);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new JobReportError(`${dir} is not a folder; give a job id or the job's checkpoint.dir`);
  }
  const metricsFile = path.join(dir, METRICS_FILE);
  let rounds: RoundMetrics[] = [];
  let skippedLines = 0;
  if (fs.existsSync(metricsFile)) {
    try {
      ({ rounds, skipped: skippedLines } = readRoundMetrics(metricsFile));
    } catch (err) {
      if (err instanceof MetricsFileError) throw new JobReportError(err.message);
      throw err;
    }
  }
  const privacy = readJson(path.join(dir, PRIVACY_REPORT_FILE));
  if (rounds.length === 0 && privacy === undefined) {
    throw new JobReportError(
      `${dir} holds neither ${METRICS_FILE} nor ${PRIVACY_REPORT_FILE}: not the checkpoint.dir of a job that released a round`,
    );
  }
  const adapter = path.join(dir, ADAPTER_DIR);
  return {
    checkpointDir: dir,
    rounds,
    privacy: privacy !== null && typeof privacy === 'object' ? (privacy as Record<string, unknown>) : null,
    spec: readJson(path.join(dir, JOB_SPEC_FILE)) ?? null,
    checkpoint: latestCheckpointDir(dir),
    adapter: fs.existsSync(adapter) ? adapter : null,
    skippedLines,
    generatedAt: new Date().toISOString(),
  };
}

/**
 * Builds the report of `checkpointDir` and writes it (atomically) to `out`, default report.html
 * there. Returns the file and how many rounds it charts. Throws JobReportError (see loadJobReport).
 */
export function writeJobReport(checkpointDir: string, out?: string): { file: string; rounds: number } {
  const input = loadJobReport(checkpointDir);
  const file = path.resolve(out ?? path.join(input.checkpointDir, REPORT_FILE));
  writeFileAtomic(file, renderJobReport(input));
  return { file, rounds: input.rounds.length };
}

/** HTML-escapes text for element content and quoted attribute values. */
export function escapeHtml(v: unknown): string {
  return String(v)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/** JSON for a `<script type="application/json">` block: no `<` can end the block. */
function scriptJson(v: unknown): string {
  return JSON.stringify(v)
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

/** ε as a number, or Infinity for a job without noise ("Infinity", a non-finite number). */
function epsilonOf(v: unknown): number | null {
  if (typeof v === 'number') return v;
  if (v === 'Infinity' || v === 'inf') return Infinity;
  return null;
}

/** ε for people: infinite is "∞", never 0 or blank. */
export function formatEpsilon(v: unknown): string {
  const e = epsilonOf(v);
  if (e === null) return '–';
  return Number.isFinite(e) ? String(Number(e.toPrecision(6))) : '∞';
}

let uplotAssets: { js: string; css: string } | undefined;
function uplot(): { js: string; css: string } {
  if (!uplotAssets) {
    const require = createRequire(import.meta.url);
    const dist = path.dirname(require.resolve('uplot/dist/uPlot.iife.min.js'));
    const js = fs.readFileSync(path.join(dist, 'uPlot.iife.min.js'), 'utf8');
    const css = fs.readFileSync(path.join(dist, 'uPlot.min.css'), 'utf8');
    // Inlined as-is: it must not be able to end its own element early.
    if (/<\/script/i.test(js) || /<\/style/i.test(css)) throw new Error('uplot assets cannot be inlined');
    uplotAssets = { js, css };
  }
  return uplotAssets;
}

/** Phases in stacking order (bottom first); others a job reports follow, sorted. */
const PHASE_ORDER = ['keys', 'aggregate', 'unmask', 'apply', 'evaluate', 'checkpoint'];

/** The chart series, one value per round (null where a round has none). */
export function chartData(rounds: readonly RoundMetrics[]) {
  const x = rounds.map((r) => r.round);
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  const seen = new Set(rounds.flatMap((r) => Object.keys(r.phase_seconds ?? {})));
  const phases = [
    ...PHASE_ORDER.filter((p) => seen.has(p)),
    ...[...seen].filter((p) => !PHASE_ORDER.includes(p)).sort(),
  ];
  const budget = rounds.find((r) => typeof r.epsilon_budget === 'number')?.epsilon_budget ?? null;
  return {
    rounds: x,
    epsilon: rounds.map((r) => num(epsilonOf(r.epsilon))),
    epsilonInfinite: rounds.some((r) => epsilonOf(r.epsilon) === Infinity),
    budget,
    evalAccuracy: rounds.map((r) => num(r.eval_accuracy)),
    evalLoss: rounds.map((r) => num(r.eval_loss)),
    phases,
    phaseSeconds: phases.map((p) => rounds.map((r) => num(r.phase_seconds?.[p]) ?? 0)),
    bytesReceived: rounds.map((r) => num(r.bytes_received)),
    bytesSent: rounds.map((r) => num(r.bytes_sent)),
    workersMembers: rounds.map((r) => num(r.workers_members)),
    workersAlive: rounds.map((r) => num(r.workers_alive)),
    dropouts: rounds.map((r) => num(r.dropouts)),
  };
}

/** Labels of the privacy report's fields, in the order the certificate lists them. */
const PRIVACY_FIELDS: [string, string][] = [
  ['epsilon', 'ε spent'],
  ['delta', 'δ'],
  ['epsilonBudget', 'ε budget'],
  ['privacyUnit', 'privacy unit'],
  ['accountant', 'accountant'],
  ['epsilonRdp', 'ε (RDP, cross-check)'],
  ['epsilonIntegerMechanism', 'ε of the integer mechanism'],
  ['integerMechanism', 'integer mechanism'],
  ['epsilonContinuousReference', 'ε of the continuous Gaussian (PLD; a reference, not a bound)'],
  ['samplingRate', 'sampling rate q'],
  ['clipNorm', 'clip norm C'],
  ['noiseMultiplier', 'noise multiplier σ'],
  ['quorum', 'quorum t'],
  ['colluders', 'colluders c'],
  ['noiseRule', 'noise rule'],
  ['nonPrivate', 'not private (no noise)'],
  ['stopReason', 'stop reason'],
];
/** Shown in their own paragraphs or sections, not in the parameter table. */
const PRIVACY_ELSEWHERE = new Set([
  'threatModel',
  'releasedRounds',
  'job',
  'signature',
  'keyId',
  'key_id',
  'signatureAlgorithm',
  'publicKeyPem',
  'signedPayload',
]);

function cell(v: unknown): string {
  if (v === null || v === undefined) return '–';
  if (typeof v === 'object') return `<code>${escapeHtml(JSON.stringify(v))}</code>`;
  return escapeHtml(v);
}

function privacySection(p: Record<string, unknown> | null): string {
  if (!p)
    return '<p class="missing">No privacy-report.json in the checkpoint folder (the job has not ended yet).</p>';
  const rows: string[] = [];
  const listed = new Set<string>();
  for (const [k, label] of PRIVACY_FIELDS) {
    if (!(k in p)) continue;
    listed.add(k);
    const v =
      k === 'epsilon' ||
      k === 'epsilonRdp' ||
      k === 'epsilonIntegerMechanism' ||
      k === 'epsilonContinuousReference'
        ? p[k] === null
          ? null
          : formatEpsilon(p[k])
        : p[k];
    rows.push(`<tr><th>${escapeHtml(label)}</th><td data-field="${escapeHtml(k)}">${cell(v)}</td></tr>`);
  }
  // Any other accounting parameter a newer job writes is shown too, under its own name.
  for (const [k, v] of Object.entries(p)) {
    if (listed.has(k) || PRIVACY_ELSEWHERE.has(k)) continue;
    rows.push(`<tr><th>${escapeHtml(k)}</th><td data-field="${escapeHtml(k)}">${cell(v)}</td></tr>`);
  }
  const released = Array.isArray(p.releasedRounds) ? p.releasedRounds.length : null;
  if (released !== null) rows.push(`<tr><th>released rounds (ledger)</th><td>${released}</td></tr>`);
  const nonPrivate = p.nonPrivate === true || epsilonOf(p.epsilon) === Infinity;
  const warning = nonPrivate
    ? '<p class="warning">NOT DIFFERENTIALLY PRIVATE: this job ran without noise; ε is ∞ and no privacy guarantee holds for its outputs.</p>'
    : '';
  const threat =
    typeof p.threatModel === 'string'
      ? `<p class="threat"><strong>Threat model.</strong> ${escapeHtml(p.threatModel)}</p>`
      : '';
  const keyId = p.keyId ?? p.key_id;
  const signature =
    p.signature !== undefined
      ? `<p class="signature"><strong>Signed</strong> (${escapeHtml(p.signatureAlgorithm ?? 'signature')}) by key <code>${escapeHtml(keyId ?? '–')}</code>: <code class="sig">${escapeHtml(p.signature)}</code></p>`
      : '<p class="unsigned">Unsigned (the API server signs the reports it serves; this file is the coordinator\'s).</p>';
  return `${warning}<table class="cert">${rows.join('')}</table>${threat}${signature}`;
}

const STYLE = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1100px;color:#1d2330;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d8dce5;padding-bottom:4px}
.sub{color:#5a6273}.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:16px}
.chart{border:1px solid #e2e5ec;border-radius:6px;padding:8px}.chart h3{font-size:14px;margin:0 0 4px}
.note{color:#5a6273;font-size:12px;margin:2px 0 0}table{border-collapse:collapse}
th,td{text-align:left;vertical-align:top;padding:3px 10px 3px 0;border-bottom:1px solid #eef0f4}th{font-weight:600;white-space:nowrap}
pre{background:#f5f6f9;padding:10px;border-radius:6px;overflow:auto;max-height:480px;font-size:12px}
code{font-size:12px;word-break:break-all}.warning{background:#fde8e8;color:#8a1111;padding:8px;border-radius:6px;font-weight:600}
.missing{color:#8a5a00}.kpis{display:flex;gap:24px;flex-wrap:wrap;margin:12px 0}.kpi b{display:block;font-size:20px}
`;

/**
 * The report as one HTML document. The page renders its charts with the inlined uPlot and exposes
 * them as `window.tgReport.charts` (name → uPlot instance); each chart's element carries
 * `data-chart` and, once drawn, `data-points` (points per series).
 */
export function renderJobReport(input: JobReportInput): string {
  const data = chartData(input.rounds);
  const p = input.privacy;
  const last = input.rounds.at(-1);
  const name =
    (typeof p?.job === 'string' ? p.job : undefined) ??
    (input.spec &&
    typeof input.spec === 'object' &&
    typeof (input.spec as { name?: unknown }).name === 'string'
      ? (input.spec as { name: string }).name
      : path.basename(path.dirname(input.checkpointDir)));
  const lastAcc = [...input.rounds].reverse().find((r) => typeof r.eval_accuracy === 'number');
  const kpi = (label: string, v: string) =>
    `<div class="kpi"><b>${escapeHtml(v)}</b>${escapeHtml(label)}</div>`;
  const kpis = [
    kpi('rounds released', last ? `${last.round} / ${last.rounds_total}` : '0'),
    kpi('ε spent', formatEpsilon(p?.epsilon ?? last?.epsilon)),
    kpi('δ', String(p?.delta ?? last?.delta ?? '–')),
    kpi(
      'held-out accuracy (last evaluation)',
      lastAcc ? `${(100 * lastAcc.eval_accuracy!).toFixed(2)} %` : '–',
    ),
  ].join('');
  const charts: [string, string, string][] = [
    [
      'epsilon',
      'ε spent per round',
      data.budget !== null ? `dashed: the budget ε = ${data.budget}` : 'no ε budget set',
    ],
    [
      'eval',
      'Held-out evaluation',
      'accuracy (left axis) and mean cross-entropy (right axis) on evaluation rounds',
    ],
    [
      'phases',
      'Round time by phase (stacked, seconds)',
      "as the aggregator measures it: 'aggregate' is the wait for the workers' inputs (their sampling, clipping, noise, encoding, masking and upload)",
    ],
    ['bytes', 'Bytes per round', 'payload bytes the aggregator received from and sent to the workers'],
    [
      'workers',
      'Workers per round',
      'members the round opened with, survivors whose input was released, dropouts',
    ],
  ];
  const chartHtml = charts
    .map(
      ([id, title, note]) =>
        `<div class="chart"><h3>${escapeHtml(title)}</h3><div data-chart="${id}"></div><p class="note">${escapeHtml(note)}</p></div>`,
    )
    .join('');
  const infinite = data.epsilonInfinite
    ? '<p class="warning">ε is ∞ (no noise): the ε chart has no finite points.</p>'
    : '';
  const skipped =
    input.skippedLines > 0
      ? `<p class="missing">${input.skippedLines} unreadable line(s) of metrics.jsonl were skipped (a crash's torn line).</p>`
      : '';
  const paths = [
    ['checkpoint folder', input.checkpointDir],
    ['latest checkpoint', input.checkpoint ?? '– (none written yet)'],
    ['adapter', input.adapter ?? '– (this job wrote no adapter)'],
    ['metrics', path.join(input.checkpointDir, METRICS_FILE)],
    ['privacy report', path.join(input.checkpointDir, PRIVACY_REPORT_FILE)],
  ]
    .map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td><code>${escapeHtml(v)}</code></td></tr>`)
    .join('');
  const spec =
    input.spec !== null
      ? `<pre>${escapeHtml(JSON.stringify(input.spec, null, 2))}</pre>`
      : `<p class="missing">No ${JOB_SPEC_FILE} in the checkpoint folder.</p>`;
  const { js, css } = uplot();
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>TensorGuard job report: ${escapeHtml(name)}</title>
<style>${css}</style><style>${STYLE}</style>
</head><body>
<h1>Job report: ${escapeHtml(name)}</h1>
<p class="sub">Built ${escapeHtml(input.generatedAt)} from <code>${escapeHtml(input.checkpointDir)}</code>. Every figure is a public aggregate: nothing here comes from one worker's data.</p>
<div class="kpis">${kpis}</div>
${infinite}${skipped}
<h2>Training</h2>
<div class="grid">${chartHtml}</div>
<h2>Privacy certificate</h2>
${privacySection(p)}
<h2>Outputs</h2>
<table>${paths}</table>
<h2>Resolved job spec</h2>
${spec}
<script type="application/json" id="tg-data">${scriptJson(data)}</script>
<script>${js}</script>
<script>${CLIENT}</script>
</body></html>
`;
}

/** The page's own script: draws the charts from #tg-data. */
const CLIENT = `(function () {
  'use strict';
  var d = JSON.parse(document.getElementById('tg-data').textContent);
  var charts = {};
  var palette = ['#3366cc', '#dc3912', '#ff9900', '#109618', '#990099', '#0099c6', '#dd4477', '#66aa00'];
  // Rounds are whole numbers: no ticks between them.
  var xAxis = { label: 'round', incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] };
  function bytes(v) {
    var units = ['B', 'kB', 'MB', 'GB'], i = 0;
    while (Math.abs(v) >= 1000 && i < units.length - 1) { v /= 1000; i++; }
    return (Math.round(v * 10) / 10) + ' ' + units[i];
  }
  function draw(name, series, data, opts) {
    var el = document.querySelector('[data-chart="' + name + '"]');
    var width = Math.max(320, el.clientWidth || 480);
    var o = {
      width: width, height: 240,
      scales: { x: { time: false } },
      axes: [xAxis, { size: 60 }],
      series: [{ label: 'round' }].concat(series)
    };
    for (var k in opts || {}) o[k] = opts[k];
    var u = new uPlot(o, [d.rounds].concat(data), el);
    charts[name] = u;
    el.setAttribute('data-points', String(d.rounds.length));
    return u;
  }
  var eps = [{ label: 'ε spent', stroke: palette[0], width: 2, points: { show: true } }];
  var epsData = [d.epsilon];
  if (d.budget !== null) {
    eps.push({ label: 'ε budget', stroke: palette[1], dash: [6, 4], points: { show: false } });
    epsData.push(d.rounds.map(function () { return d.budget; }));
  }
  draw('epsilon', eps, epsData);
  draw('eval', [
    { label: 'accuracy', stroke: palette[3], width: 2, scale: 'acc', spanGaps: true, points: { show: true } },
    { label: 'loss', stroke: palette[4], width: 2, scale: 'loss', spanGaps: true, points: { show: true } }
  ], [d.evalAccuracy, d.evalLoss], {
    scales: { x: { time: false }, acc: { range: [0, 1] }, loss: {} },
    axes: [xAxis, { scale: 'acc', label: 'accuracy', size: 60 }, { scale: 'loss', side: 1, label: 'loss', size: 60, grid: { show: false } }]
  });
  // Stacked: each series is drawn as the running total up to its phase, top one first, each
  // filled down to zero; the legend shows the phase's own seconds.
  var cum = [], acc = d.rounds.map(function () { return 0; });
  d.phaseSeconds.forEach(function (s) { acc = acc.map(function (a, i) { return a + s[i]; }); cum.push(acc); });
  var order = d.phases.map(function (_, i) { return d.phases.length - 1 - i; });
  draw('phases', order.map(function (i) {
    return { label: d.phases[i], stroke: palette[i % palette.length], fill: palette[i % palette.length] + '99',
      points: { show: false },
      value: function (u, v, si, idx) { return idx == null ? '–' : d.phaseSeconds[i][idx].toFixed(3) + ' s'; } };
  }), order.map(function (i) { return cum[i]; }));
  draw('bytes', [
    { label: 'received', stroke: palette[0], width: 2, points: { show: true }, value: function (u, v) { return v == null ? '–' : bytes(v); } },
    { label: 'sent', stroke: palette[2], width: 2, points: { show: true }, value: function (u, v) { return v == null ? '–' : bytes(v); } }
  ], [d.bytesReceived, d.bytesSent], {
    axes: [xAxis, { size: 70, values: function (u, splits) { return splits.map(bytes); } }]
  });
  draw('workers', [
    { label: 'members', stroke: palette[0], width: 2, points: { show: true } },
    { label: 'survivors', stroke: palette[3], width: 2, points: { show: true } },
    { label: 'dropouts', stroke: palette[1], width: 2, points: { show: true } }
  ], [d.workersMembers, d.workersAlive, d.dropouts]);
  window.tgReport = { charts: charts, data: d };
})();`;
