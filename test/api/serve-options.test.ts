// The `tensorguard serve` settings the Helm chart uses (helm/tensorguard/templates/deployment.yaml
// and configmap.yaml), exactly as it passes them: --tls-cert/--tls-key with --health-listen (a
// plaintext grpc.health.v1 port for the kubelet's probes), TENSORGUARD_LOG_LEVEL, RAY_ADDRESS.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { bearer, call, client, keyFile, spawnServe, startServer, tmpDir } from './helpers.js';

const KEY = 'tg_serve_options_test_key_0123456789';

type HealthClient = grpc.Client & {
  check(
    req: { service: string },
    opts: Partial<grpc.CallOptions>,
    cb: (err: grpc.ServiceError | null, res: { status: string }) => void,
  ): void;
};

async function healthClient(address: string, creds: grpc.ChannelCredentials): Promise<HealthClient> {
  const { protoPath } = await import('grpc-health-check');
  const def = grpc.loadPackageDefinition(protoLoader.loadSync(protoPath, { enums: String })) as unknown as {
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
  };
  return new def.grpc.health.v1.Health(address, creds) as unknown as HealthClient;
}

const check = (h: HealthClient, service = '') =>
  new Promise<string>((resolve, reject) =>
    h.check({ service }, { deadline: Date.now() + 5000 }, (err, res) =>
      err ? reject(err) : resolve(res.status),
    ),
  );

/** Runs `tensorguard serve ...` to its exit; for the flags refused before anything starts. */
function serveExit(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stderr: string }> {
  const child = spawnServe(args, env);
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout.resume();
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stderr })));
}

describe('tensorguard serve: the settings the Helm chart uses', function () {
  this.timeout(120_000);
  let dir: string;
  let keys: string;
  before(() => {
    dir = tmpDir('opts');
    keys = keyFile(dir, [{ id: 'k', tenant: 't', key: KEY }]);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('--tls-cert/--tls-key with --health-listen: TLS API, plaintext health-only port', async () => {
    // A self-signed certificate for 127.0.0.1, as a cert-manager Secret would hold (tls.crt, tls.key).
    const crt = path.join(dir, 'tls.crt');
    const key = path.join(dir, 'tls.key');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=tensorguard-test',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        key,
        '-out',
        crt,
      ],
      { stdio: 'ignore' },
    );
    const server = await startServer([
      '--listen',
      '127.0.0.1:0',
      '--api-keys',
      keys,
      '--db',
      path.join(dir, 'tls.db'),
      '--backend',
      'local-process',
      '--tls-cert',
      crt,
      '--tls-key',
      key,
      '--health-listen',
      '127.0.0.1:0',
    ]);
    try {
      expect(server.healthPort).to.be.a('number').and.not.equal(server.port);
      const tlsCreds = grpc.credentials.createSsl(fs.readFileSync(crt));
      // The probe port: plaintext, overall health and the service's.
      const probe = await healthClient(`127.0.0.1:${server.healthPort}`, grpc.credentials.createInsecure());
      expect(await check(probe)).to.equal('SERVING');
      expect(await check(probe, 'tensorguard.v1.TrainingService')).to.equal('SERVING');
      // It serves health only: no TrainingService (no API without TLS).
      const plainApi = client(`127.0.0.1:${server.healthPort}`);
      const err = await call(
        plainApi,
        plainApi.listJobs,
        { pageSize: 1, pageToken: '', states: [] },
        bearer(KEY),
      ).then(
        () => null,
        (e: grpc.ServiceError) => e,
      );
      expect(err?.code).to.equal(grpc.status.UNIMPLEMENTED);
      plainApi.close();
      // The API port speaks TLS only.
      const api = client(server.address, tlsCreds);
      const list = await call(api, api.listJobs, { pageSize: 1, pageToken: '', states: [] }, bearer(KEY));
      expect(list.jobs).to.deep.equal([]);
      api.close();
      const plainHealth = await healthClient(server.address, grpc.credentials.createInsecure());
      const refused = await check(plainHealth).then(
        () => null,
        (e: grpc.ServiceError) => e,
      );
      expect(refused?.code).to.equal(grpc.status.UNAVAILABLE);
      plainHealth.close();
      expect(await check(await healthClient(server.address, tlsCreds))).to.equal('SERVING');
      probe.close();
    } finally {
      expect(await server.stop()).to.equal(0);
    }
  });

  it('TENSORGUARD_LOG_LEVEL sets the log level (a flag overrides it); a bad one is refused', async () => {
    const args = [
      '--listen',
      '127.0.0.1:0',
      '--api-keys',
      keys,
      '--db',
      path.join(dir, 'log.db'),
      '--backend',
      'simulated',
    ];
    const quiet = await startServer(args, { TENSORGUARD_LOG_LEVEL: 'warn' });
    const c = client(quiet.address);
    await call(c, c.listJobs, { pageSize: 1, pageToken: '', states: [] }, bearer(KEY));
    c.close();
    expect(await quiet.stop()).to.equal(0);
    expect(quiet.logs()).to.not.include('"msg":"request"');
    expect(quiet.logs()).to.not.include('TrainingService listening');

    const loud = await startServer([...args, '--log-level', 'debug'], { TENSORGUARD_LOG_LEVEL: 'warn' });
    expect(await loud.stop()).to.equal(0);
    expect(loud.logs()).to.include('TrainingService listening');

    const bad = await serveExit(args, { TENSORGUARD_LOG_LEVEL: 'verbose' });
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.include(
      'TENSORGUARD_LOG_LEVEL must be one of trace, debug, info, warn, error, fatal, silent, got "verbose"',
    );
  });

  it('takes the Ray cluster from RAY_ADDRESS, which must be the dashboard URL', async () => {
    const args = ['--listen', '127.0.0.1:0', '--api-keys', keys, '--db', path.join(dir, 'ray.db')];
    const bad = await serveExit(args, { RAY_ADDRESS: '10.0.0.1:6379' });
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.include("RAY_ADDRESS: '10.0.0.1:6379' is not a Ray dashboard URL");
    const badFlag = await serveExit([...args, '--address', 'ray://head:10001'], {});
    expect(badFlag.code).to.equal(2);
    expect(badFlag.stderr).to.include('--address must be the Ray dashboard URL http://HOST:PORT');
    // A cluster that does not answer yet (it may start after the server): serve starts and
    // reports the address it will use.
    const s = await startServer(args, { RAY_ADDRESS: 'http://127.0.0.1:9' });
    expect(await s.stop()).to.equal(0);
    // (after the exit: pino writes the start-up line asynchronously)
    expect(s.logs()).to.include('"backend":"ray","rayDashboard":"http://127.0.0.1:9","rayHeadPgid":null');
  });
});
