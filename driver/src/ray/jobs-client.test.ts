// The Jobs API client against a local node:http stand-in for Ray's dashboard (the real one is
// exercised in test/ray): headers, typed errors, retries and idempotent submission.
import http from 'node:http';
import type net from 'node:net';
import { expect } from 'chai';
import { RayAuthError, RayHttpError, RayJobNotFoundError, RayUnavailableError } from './errors.js';
import { RayJobsClient } from './jobs-client.js';
import { parseJobLine, scanLogs } from './job.js';

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

async function stub(handler: (req: Seen, n: number) => [number, unknown]) {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const s = { method: req.method!, url: req.url!, headers: req.headers, body };
      seen.push(s);
      const [status, out] = handler(s, seen.length);
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(typeof out === 'string' ? out : JSON.stringify(out));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  return { seen, address, close: () => new Promise((r) => server.close(r)) };
}

const details = (id: string, metadata: Record<string, string> = {}) => ({
  submission_id: id,
  job_id: null,
  status: 'RUNNING',
  entrypoint: 'x',
  message: null,
  error_type: null,
  start_time: 1,
  end_time: null,
  metadata,
});

describe('ray/RayJobsClient', () => {
  it('sends the bearer token and no browser headers (Ray answers 405 to those)', async () => {
    const s = await stub(() => [200, { submission_id: 'j1' }]);
    try {
      const c = new RayJobsClient({ address: s.address, token: 'tok' });
      expect(await c.submit({ entrypoint: 'echo', submissionId: 'j1' })).to.equal('j1');
      const req = s.seen[0]!;
      expect(req.method).to.equal('POST');
      expect(req.url).to.equal('/api/jobs/');
      expect(req.headers.authorization).to.equal('Bearer tok');
      expect(req.headers).to.not.have.property('sec-fetch-mode');
      expect(JSON.parse(req.body)).to.deep.include({
        entrypoint: 'echo',
        submission_id: 'j1',
        entrypoint_num_cpus: 0,
        metadata: { tensorguard_submission: 'j1' },
      });
    } finally {
      await s.close();
    }
  });

  it('maps 404, 401 and other statuses to typed errors', async () => {
    const s = await stub((r) =>
      r.url.includes('missing') ? [404, 'not found'] : r.url.includes('secret') ? [401, 'no'] : [400, 'bad'],
    );
    try {
      const c = new RayJobsClient({ address: s.address });
      await expectReject(c.status('missing'), RayJobNotFoundError, /no job 'missing'/);
      await expectReject(c.status('secret'), RayAuthError, /RAY_AUTH_TOKEN/);
      await expectReject(c.status('other'), RayHttpError, /answered 400/);
    } finally {
      await s.close();
    }
  });

  it('retries GETs on 5xx, then gives up with RayUnavailableError', async () => {
    const s = await stub((_r, n) => (n < 3 ? [503, 'busy'] : [200, details('j')]));
    try {
      const c = new RayJobsClient({ address: s.address, attempts: 3 });
      expect((await c.status('j')).status).to.equal('RUNNING');
      expect(s.seen).to.have.length(3);
      const c2 = new RayJobsClient({ address: s.address, attempts: 2 });
      s.seen.length = 0;
      await expectReject(c2.status('j'), RayUnavailableError, /503 after 2 attempts/);
    } finally {
      await s.close();
    }
  });

  it('takes "already exists" for its own submission id as success, and not for another', async () => {
    const s = await stub((r) =>
      r.method === 'POST'
        ? [500, 'Job with submission_id j2 already exists']
        : [200, details('j2', r.url.endsWith('/j2') ? { tensorguard_submission: 'j2' } : {})],
    );
    try {
      const c = new RayJobsClient({ address: s.address });
      expect(await c.submit({ entrypoint: 'e', submissionId: 'j2' })).to.equal('j2');
      await expectReject(c.submit({ entrypoint: 'e', submissionId: 'j3' }), RayHttpError, /already exists/);
    } finally {
      await s.close();
    }
  });

  it('reports an unreachable cluster with its cause', async () => {
    const c = new RayJobsClient({ address: 'http://127.0.0.1:1', attempts: 2 });
    const err = await expectReject(
      c.version(),
      RayUnavailableError,
      /Ray at http:\/\/127.0.0.1:1 is unavailable/,
    );
    expect((err.cause as NodeJS.ErrnoException).code).to.equal('ECONNREFUSED');
  });
});

describe('ray/job lines', () => {
  it('parses progress and result lines and ignores prefixed actor lines', () => {
    const logs = [
      '(WorkerSupervisor pid=1) {"type":"metrics","round":1}',
      '{"type":"progress","round":1,"rounds_total":2,"epsilon":0.5,"eval_accuracy":null,"round_seconds":1}',
      'some log',
      '{"type":"progress","round":2,"rounds_total":2,"epsilon":1,"eval_accuracy":0.8,"round_seconds":1}',
      '{"type":"result","job_id":"j","status":"succeeded","epsilon":1}',
    ].join('\n');
    const { progress, result } = scanLogs(logs);
    expect(progress?.round).to.equal(2);
    expect(result?.status).to.equal('succeeded');
    expect(parseJobLine('(A pid=1) {"type":"progress"}')).to.equal(undefined);
  });
});

async function expectReject<E extends Error>(
  p: Promise<unknown>,
  type: new (...a: never[]) => E,
  message: RegExp,
): Promise<E> {
  try {
    await p;
  } catch (err) {
    expect(err).to.be.instanceOf(type);
    expect((err as Error).message).to.match(message);
    return err as E;
  }
  throw new Error('expected a rejection');
}
