import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { runCli } from '../cli.js';
import { validSpecInput } from '../spec/testing.js';

function io(env: NodeJS.ProcessEnv = {}) {
  const out = { stdout: '', stderr: '' };
  return {
    out,
    io: {
      stdout: (t: string) => (out.stdout += t),
      stderr: (t: string) => (out.stderr += t),
      signal: new AbortController().signal,
      env: { TENSORGUARD_ROOT: process.env.TENSORGUARD_ROOT, ...env },
      cwd: process.cwd(),
    },
  };
}

describe('tensorguard train (no cluster needed)', () => {
  let dir: string;
  let server: http.Server;
  let requests = 0;
  let address: string;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-train-'));
    server = http.createServer((_req, res) => {
      requests++;
      res.writeHead(500).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    address = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  });
  after(async () => {
    fs.rmSync(dir, { recursive: true, force: true });
    await new Promise((r) => server.close(r));
  });

  it('exits 2 on a bad spec, listing every bad field, before contacting Ray', async () => {
    const spec = validSpecInput() as Record<string, unknown>;
    spec.rounds = 0;
    (spec.workers as Record<string, unknown>).placementStrategy = 'STRICT';
    const file = path.join(dir, 'bad.json');
    fs.writeFileSync(file, JSON.stringify(spec));
    const { out, io: i } = io();
    const code = await runCli(['train', file, '--address', address], i);
    expect(code).to.equal(2);
    expect(out.stderr).to.equal(
      [
        `tensorguard train: invalid job spec ${file} (2 problems):`,
        "  - workers.placementStrategy: must be one of 'PACK', 'SPREAD', got 'STRICT'",
        '  - rounds: must be ≥ 1, got 0',
        '',
      ].join('\n'),
    );
    expect(requests).to.equal(0);
  });

  it('exits 2 for bad arguments', async () => {
    const { out, io: i } = io();
    expect(await runCli(['train'], i)).to.equal(2);
    expect(out.stderr).to.match(/expected one job spec file/);
    expect(await runCli(['status', 'a', 'b'], i)).to.equal(2);
    expect(await runCli(['logs', 'x', '--bogus'], i)).to.equal(2);
    expect(out.stderr).to.match(/unknown option --bogus/);
  });

  it('status without any cluster says how to give one (exit 1)', async () => {
    const { out, io: i } = io({ TENSORGUARD_ROOT: dir });
    expect(await runCli(['status', 'some-job'], i)).to.equal(1);
    expect(out.stderr).to.match(/no Ray cluster: pass --address/);
  });
});
