// `tensorguard status <id> --watch` against a node:http + WebSocket stand-in for Ray's dashboard
// (the Jobs REST API and the /logs/tail socket, which sends the entrypoint's lines as the job
// runs): the live progress line of `train` until the job ends, then the final status; exit codes;
// Ctrl-C stops watching, not the job. The real dashboard is exercised in test/api/artifact.test.ts.
import { expect } from 'chai';
import http from 'node:http';
import type net from 'node:net';
import { WebSocketServer } from 'ws';
import { runCli } from '../cli.js';

const progress = (round: number, acc: number | null) =>
  JSON.stringify({
    type: 'progress',
    round,
    rounds_total: 3,
    epsilon: 0.25 * round,
    eval_accuracy: acc,
    round_seconds: 1.5,
  });

interface Job {
  lines: string[];
  final: 'SUCCEEDED' | 'FAILED';
  /** ms between lines on the tail socket. */
  gapMs: number;
}

async function dashboard(jobs: Record<string, Job>) {
  const seen: string[] = [];
  const ended = new Set<string>();
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    const m = /^\/api\/jobs\/([^/]+)(\/logs)?$/.exec(req.url ?? '');
    const job = m ? jobs[decodeURIComponent(m[1]!)] : undefined;
    if (!m || !job) return res.writeHead(404).end('not found');
    const id = decodeURIComponent(m[1]!);
    const done = ended.has(id);
    const body = m[2]
      ? { logs: job.lines.slice(0, done ? job.lines.length : 1).join('\n') + '\n' }
      : {
          submission_id: id,
          job_id: null,
          status: done ? job.final : 'RUNNING',
          entrypoint: 'x',
          message: done && job.final === 'FAILED' ? 'Job entrypoint command failed with exit code 1' : null,
          error_type: null,
          start_time: 1,
          end_time: done ? 2 : null,
          metadata: { tensorguard_name: 'w', tensorguard_rounds: '3', tensorguard_epsilon_budget: '8' },
        };
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    const m = /^\/api\/jobs\/([^/]+)\/logs\/tail$/.exec(req.url ?? '');
    const id = m ? decodeURIComponent(m[1]!) : '';
    const job = jobs[id];
    if (!job) return socket.destroy();
    wss.handleUpgrade(req, socket, head, (ws) => {
      let i = 0;
      const next = () => {
        if (ws.readyState !== ws.OPEN) return;
        if (i === job.lines.length) {
          ended.add(id);
          return ws.close();
        }
        ws.send(job.lines[i++] + '\n');
        setTimeout(next, job.gapMs);
      };
      next();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    seen,
    address: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close: async () => {
      for (const c of wss.clients) c.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

function io(signal = new AbortController().signal) {
  const out = { stdout: '', stderr: '' };
  return {
    out,
    io: {
      stdout: (t: string) => (out.stdout += t),
      stderr: (t: string) => (out.stderr += t),
      signal,
      env: { TENSORGUARD_ROOT: process.env.TENSORGUARD_ROOT },
      cwd: process.cwd(),
    },
  };
}

/** The progress lines on stderr, whether written in place (a terminal) or one per line. */
const progressLines = (stderr: string) =>
  stderr
    // eslint-disable-next-line no-control-regex -- the in-place rewrite's erase sequence
    .split(/\r\x1b\[2K|\n/)
    .filter((l) => l.startsWith('round '));

describe('tensorguard status --watch', function () {
  this.timeout(20_000);
  let d: Awaited<ReturnType<typeof dashboard>>;
  const result = (status: string) =>
    JSON.stringify({ type: 'result', job_id: 'ok', status, rounds: 3, epsilon: 0.75, delta: 1e-5 });
  before(async () => {
    d = await dashboard({
      ok: {
        lines: ['starting', progress(1, null), progress(2, 0.7), progress(3, null), result('succeeded')],
        final: 'SUCCEEDED',
        gapMs: 30,
      },
      bad: {
        lines: [
          progress(1, 0.5),
          JSON.stringify({ type: 'result', job_id: 'bad', status: 'failed', error: 'boom' }),
        ],
        final: 'FAILED',
        gapMs: 30,
      },
      slow: {
        lines: [progress(1, 0.5), ...Array<string>(100).fill('still running')],
        final: 'SUCCEEDED',
        gapMs: 100,
      },
    });
  });
  after(() => d.close());

  it("follows the job with train's progress line until it ends, then prints its status (exit 0)", async () => {
    const { out, io: i } = io();
    expect(await runCli(['status', 'ok', '--watch', '--json', '--address', d.address], i)).to.equal(0);
    expect(progressLines(out.stderr)).to.deep.equal([
      'round 1/3 · ε 0.250 of 8 · eval acc – · 1.50 s/round · ETA 3s',
      'round 2/3 · ε 0.500 of 8 · eval acc 0.700 · 1.50 s/round · ETA 2s',
      // The last evaluation's accuracy stays shown between evaluations, as in `train`.
      'round 3/3 · ε 0.750 of 8 · eval acc 0.700 · 1.50 s/round · ETA 0s',
    ]);
    const final = JSON.parse(out.stdout) as Record<string, unknown>;
    expect(final).to.deep.include({ job_id: 'ok', status: 'SUCCEEDED' });
    expect(final.progress).to.deep.include({ round: 3 });
    expect(final.result).to.deep.include({ status: 'succeeded', rounds: 3 });

    const human = io();
    expect(await runCli(['status', 'ok', '--watch', '--address', d.address], human.io)).to.equal(0);
    expect(progressLines(human.out.stderr)).to.have.length(3);
    expect(human.out.stdout).to.match(/^job ok: SUCCEEDED\n {2}round 3\/3 · ε 0\.750 of 8 ·/);
  });

  it('exits 1 when the watched job fails, and for a job the cluster does not have', async () => {
    const { out, io: i } = io();
    expect(await runCli(['status', 'bad', '--watch', '--address', d.address], i)).to.equal(1);
    expect(progressLines(out.stderr)).to.deep.equal([
      'round 1/3 · ε 0.250 of 8 · eval acc 0.500 · 1.50 s/round · ETA 3s',
    ]);
    expect(out.stdout).to.equal(
      'job bad: FAILED\n  round 1/3 · ε 0.250 of 8 · eval acc 0.500 · 1.50 s/round · ETA 3s\n  job bad failed: boom\n',
    );
    const missing = io();
    expect(await runCli(['status', 'nope', '--watch', '--address', d.address], missing.io)).to.equal(1);
    expect(missing.out.stderr).to.match(/^tensorguard status: .*nope/);
  });

  it('Ctrl-C stops watching (exit 130) and leaves the job running', async () => {
    const ctl = new AbortController();
    const { out, io: i } = io(ctl.signal);
    const run = runCli(['status', 'slow', '--watch', '--address', d.address], i);
    for (let k = 0; k < 100 && progressLines(out.stderr).length === 0; k++)
      await new Promise((r) => setTimeout(r, 20));
    ctl.abort();
    expect(await run).to.equal(130);
    expect(out.stderr).to.include('stopped watching; job slow runs on (tensorguard status slow --watch)');
    expect(d.seen.filter((s) => s.startsWith('POST'))).to.deep.equal([]);
  });
});
