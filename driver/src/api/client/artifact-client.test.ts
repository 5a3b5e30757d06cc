// downloadJobArtifact against a real grpc-js server on loopback that sends scripted streams: the
// files of an intact stream land in place; a wrong SHA-256, a short or long file, a file name
// with a directory, bytes before a header, a server error or a stream cut mid-file leave
// nothing in the folder.
import * as grpc from '@grpc/grpc-js';
import {
  type trainingService as pb,
  TrainingServiceClient,
  TrainingServiceService,
} from '@tensorguard/proto';
import { expect } from 'chai';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ArtifactIntegrityError, downloadJobArtifact } from './artifact-client.js';

const sha = (b: Uint8Array) => crypto.createHash('sha256').update(b).digest('hex');
const header = (name: string, data: Buffer, over: Partial<pb.ArtifactFile> = {}) => ({
  file: { name, sizeBytes: data.length, sha256: sha(data), mediaType: 'application/octet-stream', ...over },
});

describe('api/artifact-client: downloadJobArtifact checks what arrives', function () {
  this.timeout(20_000);
  let server: grpc.Server;
  let client: InstanceType<typeof TrainingServiceClient>;
  /** What the server sends next: messages, then an optional error status. */
  let script: { messages: pb.GetJobArtifactResponse[]; error?: { code: grpc.status; details: string } };
  let seen: pb.GetJobArtifactRequest | null = null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-artifact-client-'));
  let out = '';
  let n = 0;

  before(async () => {
    server = new grpc.Server();
    server.addService(TrainingServiceService, {
      getJobArtifact: (
        call: grpc.ServerWritableStream<pb.GetJobArtifactRequest, pb.GetJobArtifactResponse>,
      ) => {
        seen = call.request;
        for (const m of script.messages) call.write(m);
        if (script.error) call.emit('error', script.error);
        else call.end();
      },
    } as unknown as grpc.UntypedServiceImplementation);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    client = new TrainingServiceClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });
  beforeEach(() => {
    out = path.join(dir, `out-${++n}`);
  });
  after(() => {
    client.close();
    server.forceShutdown();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const download = () =>
    downloadJobArtifact(client, {
      jobId: 'job-' + 'a'.repeat(26),
      kind: 'ADAPTER',
      outDir: out,
      metadata: new grpc.Metadata(),
      timeoutMs: 10_000,
    });
  const refusal = async (): Promise<Error> => {
    try {
      await download();
    } catch (err) {
      return err as Error;
    }
    throw new Error('expected the download to fail');
  };

  it('saves every file of an intact stream under its name and returns size and SHA-256', async () => {
    const a = crypto.randomBytes(2500);
    const b = Buffer.from('{"peft_type":"LORA"}');
    script = {
      messages: [
        header('adapter_model.safetensors', a),
        { chunk: a.subarray(0, 1000) },
        { chunk: a.subarray(1000) },
        header('adapter_config.json', b, { mediaType: 'application/json' }),
        { chunk: b },
        header('empty.txt', Buffer.alloc(0)),
      ],
    };
    const files = await download();
    expect(seen).to.deep.equal({ jobId: 'job-' + 'a'.repeat(26), kind: 2 });
    expect(files.map((f) => [f.name, f.sizeBytes, f.sha256, f.path])).to.deep.equal([
      ['adapter_model.safetensors', 2500, sha(a), path.join(out, 'adapter_model.safetensors')],
      ['adapter_config.json', b.length, sha(b), path.join(out, 'adapter_config.json')],
      ['empty.txt', 0, sha(Buffer.alloc(0)), path.join(out, 'empty.txt')],
    ]);
    expect(fs.readFileSync(files[0]!.path).equals(a)).to.equal(true);
    expect(fs.readdirSync(out).sort()).to.deep.equal([
      'adapter_config.json',
      'adapter_model.safetensors',
      'empty.txt',
    ]);
    expect(fs.statSync(files[0]!.path).mode & 0o777).to.equal(0o600);
  });

  it('refuses a file whose SHA-256 does not match, and saves none of the stream', async () => {
    const good = Buffer.from('good');
    const bad = Buffer.from('tampered');
    script = {
      messages: [
        header('a.json', good),
        { chunk: good },
        header('b.safetensors', bad, { sha256: sha(Buffer.from('original')) }),
        { chunk: bad },
      ],
    };
    const e = await refusal();
    expect(e).to.be.instanceOf(ArtifactIntegrityError);
    expect(e.message).to.equal(
      `b.safetensors: SHA-256 ${sha(bad)} does not match the server's ${sha(Buffer.from('original'))}; nothing was saved`,
    );
    expect(fs.readdirSync(out)).to.deep.equal([]);
  });

  it('refuses a file shorter or longer than announced', async () => {
    const d = Buffer.from('0123456789');
    script = { messages: [header('m.safetensors', d, { sizeBytes: 11 }), { chunk: d }] };
    expect((await refusal()).message).to.equal(
      'm.safetensors: received 10 bytes, the server announced 11; nothing was saved',
    );
    script = { messages: [header('m.safetensors', d, { sizeBytes: 9 }), { chunk: d }] };
    expect((await refusal()).message).to.equal(
      'm.safetensors: more bytes than the 9 the server announced; nothing was saved',
    );
    expect(fs.readdirSync(out)).to.deep.equal([]);
  });

  it('refuses a file name that is not one plain name, and bytes before any header', async () => {
    const d = Buffer.from('x');
    for (const name of ['../escape', 'sub/file', '.hidden', '', 'a.json']) {
      script = { messages: [header('a.json', d), { chunk: d }, header(name, d), { chunk: d }] };
      const e = await refusal();
      expect(e, name).to.be.instanceOf(ArtifactIntegrityError);
      expect(e.message).to.include('not a new plain file name');
    }
    script = { messages: [{ chunk: d }] };
    expect((await refusal()).message).to.equal('the server sent bytes before a file header');
    expect(fs.existsSync(path.join(dir, 'escape'))).to.equal(false);
    expect(fs.readdirSync(out)).to.deep.equal([]);
  });

  it("passes the server's status through and leaves nothing when the stream is cut mid-file", async () => {
    script = { messages: [], error: { code: grpc.status.NOT_FOUND, details: 'job x has no adapter: …' } };
    const nf = (await refusal()) as grpc.ServiceError;
    expect(nf.code).to.equal(grpc.status.NOT_FOUND);
    expect(nf.details).to.equal('job x has no adapter: …');
    const d = crypto.randomBytes(100);
    script = {
      messages: [header('m.safetensors', d), { chunk: d.subarray(0, 50) }],
      error: { code: grpc.status.UNAVAILABLE, details: 'server shutting down' },
    };
    const cut = (await refusal()) as grpc.ServiceError;
    expect(cut.code).to.equal(grpc.status.UNAVAILABLE);
    expect(fs.readdirSync(out)).to.deep.equal([]);
  });

  it('stops and saves nothing when its signal aborts', async () => {
    script = { messages: [] };
    const ctl = new AbortController();
    ctl.abort(new Error('user gave up'));
    const e = await downloadJobArtifact(client, {
      jobId: 'job-' + 'a'.repeat(26),
      kind: 'CHECKPOINT',
      outDir: out,
      metadata: new grpc.Metadata(),
      signal: ctl.signal,
    }).catch((err: unknown) => err as Error);
    expect((e as Error).message).to.equal('user gave up');
    expect(fs.readdirSync(out)).to.deep.equal([]);
  });
});
