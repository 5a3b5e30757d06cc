// The shipped monitoring files against a real Prometheus (Debian's `prometheus`) and a real
// private Ray head: Prometheus runs with ray-cluster/monitoring/prometheus.yml (Ray's service
// discovery file of this head, 1 s scrapes, its own port and temp storage), a short real job runs
// (the mlp on 300 Fashion-MNIST records, 2 workers, secure aggregation), and then:
// - Prometheus's HTTP API gives the job's final `ray_tensorguard_epsilon`, equal to the ε of the
//   job's result and privacy report;
// - every PromQL expression of ray-cluster/monitoring/grafana/tensorguard.json returns data over
//   the job's time span (template variables substituted as Grafana would);
// - the head, started with RAY_PROMETHEUS_HOST and RAY_METRICS_GRAFANA_DASHBOARD_OUTPUT_DIR,
//   finds that Prometheus (the dashboard's Metrics view) and provisions its Grafana dashboards
//   from the folder that holds TensorGuard's.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { LocalHead } from '@tensorguard/driver';
import { cli, dashboardGet, jobEnv, readJson, root, until, type PrivacyReport } from '../ray/harness.js';

const MONITORING = path.join(root, 'ray-cluster', 'monitoring');
const DASHBOARD = path.join(MONITORING, 'grafana', 'tensorguard.json');
const PROMETHEUS = process.env.TENSORGUARD_PROMETHEUS ?? '/usr/bin/prometheus';

interface PromResponse<T> {
  status: string;
  data: T;
  error?: string;
}
interface RangeSeries {
  metric: Record<string, string>;
  values: [number, string][];
}
interface Panel {
  title: string;
  targets?: { expr: string }[];
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen(0, '127.0.0.1', resolve);
  });
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

/** Every PromQL expression of the dashboard, with the panel it belongs to. */
function dashboardExprs(): { panel: string; expr: string }[] {
  const dash = readJson<{ panels: Panel[] }>(DASHBOARD);
  return dash.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
}

describe('monitoring: Prometheus scrapes a Ray head during a real job; the Grafana dashboard has data', function () {
  this.timeout(300_000);
  let dir: string;
  let head: LocalHead | undefined;
  let prom: ChildProcess | undefined;
  let promUrl: string;
  let promLog = '';

  const query = async <T>(api: string, params: Record<string, string>): Promise<T> => {
    const res = await fetch(`${promUrl}/api/v1/${api}?${new URLSearchParams(params).toString()}`);
    const body = (await res.json()) as PromResponse<T>;
    if (body.status !== 'success')
      throw new Error(`Prometheus ${api} ${JSON.stringify(params)}: ${body.error}`);
    return body.data;
  };

  before(async function () {
    const version = spawnSync(PROMETHEUS, ['--version'], { encoding: 'utf8' });
    if (version.status !== 0) {
      throw new Error(
        `${PROMETHEUS} is not runnable (${version.error?.message ?? version.stderr}): install the Debian package ` +
          '`prometheus` (`node scripts/setup.mjs --for-tests` does, as root), or set TENSORGUARD_PROMETHEUS to its path',
      );
    }
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-prom-it-'));
    const promPort = await freePort();
    promUrl = `http://127.0.0.1:${promPort}`;

    // The head's dashboard reads these at start: where Prometheus is (its Metrics view and the
    // Grafana data source it provisions), and the folder it writes its Grafana dashboards to and
    // provisions Grafana from, which already holds TensorGuard's.
    const grafanaDir = path.join(dir, 'grafana-dashboards');
    fs.mkdirSync(grafanaDir);
    fs.copyFileSync(DASHBOARD, path.join(grafanaDir, 'tensorguard.json'));
    const saved = {
      RAY_PROMETHEUS_HOST: process.env.RAY_PROMETHEUS_HOST,
      RAY_METRICS_GRAFANA_DASHBOARD_OUTPUT_DIR: process.env.RAY_METRICS_GRAFANA_DASHBOARD_OUTPUT_DIR,
    };
    process.env.RAY_PROMETHEUS_HOST = promUrl;
    process.env.RAY_METRICS_GRAFANA_DASHBOARD_OUTPUT_DIR = grafanaDir;
    try {
      head = await LocalHead.start({ root, numCpus: 4 });
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }

    // The shipped configuration, pointed at this head's service discovery file, scraping every
    // second (Ray reports every 2 s on test heads).
    const discovery = path.join(head.info.tempDir, 'prom_metrics_service_discovery.json');
    const shipped = fs.readFileSync(path.join(MONITORING, 'prometheus.yml'), 'utf8');
    expect(shipped).to.include('/tmp/ray/prom_metrics_service_discovery.json');
    const config = shipped
      .replace('/tmp/ray/prom_metrics_service_discovery.json', discovery)
      .replace(/scrape_interval: \S+/, 'scrape_interval: 1s');
    fs.writeFileSync(path.join(dir, 'prometheus.yml'), config);
    prom = spawn(
      PROMETHEUS,
      [
        `--config.file=${path.join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${path.join(dir, 'tsdb')}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
        '--storage.tsdb.retention.time=1h',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    prom.stdout!.on('data', (d: Buffer) => (promLog += d.toString()));
    prom.stderr!.on('data', (d: Buffer) => (promLog = (promLog + d.toString()).slice(-20_000)));
    await until(
      'Prometheus to be ready',
      async () => {
        if (prom!.exitCode !== null) throw new Error(`prometheus exited with ${prom!.exitCode}:\n${promLog}`);
        return fetch(`${promUrl}/-/ready`).then(
          (r) => r.ok,
          () => false,
        );
      },
      60_000,
    );
  });

  after(async () => {
    if (prom && prom.exitCode === null) {
      const exited = new Promise((r) => prom!.once('exit', r));
      prom.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (prom.exitCode === null) prom.kill('SIGKILL');
    }
    await head?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('finds the head through Ray’s service discovery file and scrapes its metrics export port', async () => {
    const port = head!.info.metricsPort;
    type Target = { labels: Record<string, string>; health: string; lastError: string; scrapeUrl: string };
    let targets: Target[] = [];
    await until(
      `the target with the head's metrics export port ${port} to be up`,
      async () => {
        targets = (await query<{ activeTargets: Target[] }>('targets', {})).activeTargets;
        return targets.some((t) => t.labels.instance?.endsWith(`:${port}`) && t.health === 'up');
      },
      60_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; targets: ${JSON.stringify(targets)}`);
    });
  });

  it('the Ray dashboard finds Prometheus (Metrics view) and provisions Grafana from the folder with TensorGuard’s dashboard', async () => {
    const health = await dashboardGet<{ result: boolean; msg: string }>(head!.info, '/api/prometheus_health');
    expect(health.result, health.msg).to.equal(true);
    const grafanaDir = path.join(dir, 'grafana-dashboards');
    // Ray wrote its own dashboards beside ours, and its Grafana provisioning reads that folder.
    expect(fs.readdirSync(grafanaDir)).to.include.members([
      'tensorguard.json',
      'default_grafana_dashboard.json',
    ]);
    const provisioning = fs.readFileSync(
      path.join(
        head!.info.tempDir,
        'session_latest',
        'metrics',
        'grafana',
        'provisioning',
        'dashboards',
        'default.yml',
      ),
      'utf8',
    );
    expect(provisioning).to.include(`path: ${grafanaDir}`);
    const datasource = fs.readFileSync(
      path.join(
        head!.info.tempDir,
        'session_latest',
        'metrics',
        'grafana',
        'provisioning',
        'datasources',
        'default.yml',
      ),
      'utf8',
    );
    expect(datasource).to.include(`url: ${promUrl}`);
  });

  it('after a real job, Prometheus holds its final ε and every dashboard expression returns data', async () => {
    const spec = path.join(dir, 'prom.yaml');
    fs.writeFileSync(
      spec,
      [
        'name: prom',
        'model: { kind: mlp, hidden: [16] }',
        'dataset: { format: idx, preset: fashion-mnist, trainExamples: 300, testExamples: 200 }',
        'workers: { count: 2, cpusPerWorker: 0.5, maxRestarts: 1 }',
        'coordinator: { cpus: 0.5 }',
        'privacy: { clipNorm: 1, noiseMultiplier: 1.1, epsilonBudget: 50, samplingRate: 0.1 }',
        'secureAggregation: { mode: masking, threshold: 2 }',
        'optimizer: { kind: sgd, learningRate: 0.1 }',
        // Enough rounds for several of Ray's 2 s reports (rate() needs two samples in its window).
        'rounds: 40',
        `checkpoint: { dir: ${path.join(dir, 'ckpt')}, everyRounds: 40 }`,
      ].join('\n') + '\n',
    );
    const start = Date.now() / 1000;
    const run = cli(['train', spec, '--json'], {
      ...jobEnv(),
      RAY_AUTH_TOKEN: head!.info.token,
      RAY_ADDRESS: head!.info.dashboardUrl,
    });
    const code = await run.done;
    expect(code, `${run.stdout}\n${run.stderr}`).to.equal(0);
    const result = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as {
      job_id: string;
      status: string;
      epsilon: number;
      privacy_report: string;
    };
    expect(result.status).to.equal('succeeded');
    expect(result.epsilon).to.equal(readJson<PrivacyReport>(result.privacy_report).epsilon);
    const job = result.job_id;

    // The final ε: the actor's last value, exported before it was killed (its stop() waits for
    // Ray's next report), then scraped; the series is stale by now, hence last_over_time.
    const finalEpsilon = async () => {
      const v = await query<{ result: { value: [number, string] }[] }>('query', {
        query: `last_over_time(ray_tensorguard_epsilon{tensorguard_job="${job}",worker="aggregator"}[10m])`,
      });
      return v.result.length === 1 ? Number(v.result[0]!.value[1]) : undefined;
    };
    let last: number | undefined;
    await until(
      'the final ε in Prometheus',
      async () => {
        last = await finalEpsilon();
        return last === result.epsilon;
      },
      30_000,
    ).catch(() => undefined);
    expect(last, 'last_over_time(ray_tensorguard_epsilon[10m])').to.equal(result.epsilon);

    // Every expression of the dashboard over the job's span, as Grafana's time series panels
    // query it: `$tensorguard_job` is the job, `$__rate_interval` 4 scrape intervals and more.
    const end = Date.now() / 1000;
    const exprs = dashboardExprs();
    expect(exprs.length).to.be.greaterThan(10);
    const empty: string[] = [];
    for (const { panel, expr } of exprs) {
      const q = expr
        .replaceAll('$tensorguard_job', job)
        .replaceAll('$__rate_interval', '10s')
        .replaceAll('$__interval', '1s');
      expect(q, `${panel}: a template variable left in ${q}`).not.to.match(/\$\w/);
      const data = await query<{ resultType: string; result: RangeSeries[] }>('query_range', {
        query: q,
        start: String(Math.floor(start)),
        end: String(Math.ceil(end)),
        step: '1',
      });
      const finite = data.result.flatMap((s) => s.values.map(([, v]) => Number(v))).filter(Number.isFinite);
      if (finite.length === 0) empty.push(`${panel}: ${q}`);
    }
    expect(empty, 'dashboard expressions without data').to.deep.equal([]);

    // The phases of the per-phase panels: the coordinator's and the workers'.
    const phases = await query<{ result: RangeSeries[] }>('query_range', {
      query: `sum by (phase) (ray_tensorguard_round_seconds_count{tensorguard_job="${job}"})`,
      start: String(Math.floor(start)),
      end: String(Math.ceil(end)),
      step: '1',
    });
    expect(phases.result.map((s) => s.metric.phase)).to.include.members([
      'total',
      'aggregate',
      'local',
      'mask',
      'unmask',
    ]);
  });
});
