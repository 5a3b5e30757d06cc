// The coordinator program (bin/coordinator.ts runs it): reads the job config, builds the model
// from metadata (never a training record), resumes from the checkpoint and ledger, serves secure-agg's
// aggregator service and runs the job. stdout: {"type":"listening",...}, one {"type":"metrics",...}
// per round, then {"type":"done",...}. With secureAggregation.mode 'he' it uses the key holder at
// secureAggregation.keyHolder, or starts secure-agg's key holder (its bin/key-holder) as its child on
// loopback with the key holder's identity (--key-holder-tls-dir); the child's stdout does not reach
// this stdout. Either way the link to the key holder is mutual TLS with this coordinator's identity.
//
// It is a function, not only a script, so that a test harness can run the same program with
// CoordinatorHooks injected (the crash-consistency test) and no test hook lives in the release path.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RunConfig } from '../config.js';
import type { TlsIdentity } from '../tls.js';
import type { CoordinatorHooks, HeKeyHolderLink } from './coordinator.js';
import { parseArgs } from '../bin/args.js';
import { emitLine } from '../metrics.js';
import { writeFileAtomic } from '../checkpoint/atomic.js';
import { JOB_SPEC_FILE, writeJobReport } from '../report/html.js';
import { createLogger, type Logger } from '../logger.js';
import { startTelemetry, type Telemetry } from '../telemetry.js';

/**
 * Runs the coordinator program with `argv` (`--config`, `--tls-dir`, `--listen`,
 * `--key-holder-tls-dir`) and exits the
 * process: 0 when the job succeeded, 1 otherwise (the `done` line then carries `error`).
 */
export function runCoordinatorProgram(argv: string[], hooks: CoordinatorHooks = {}): void {
  const log = createLogger('coordinator');
  let telemetry: Telemetry | undefined;
  const main = async (): Promise<number> => {
    telemetry = await startTelemetry(process.env, 'tensorguard-coordinator');
    return coordinatorMain(argv, hooks, log);
  };
  main().then(
    async (code) => {
      await telemetry?.shutdown();
      process.exit(code);
    },
    (err: unknown) => {
      const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      log.error({ err }, 'coordinator failed to start');
      emitLine({
        type: 'done',
        status: 'failed',
        epsilon: null,
        delta: null,
        test_accuracy: null,
        rounds: 0,
        checkpoint: null,
        privacy_report: null,
        error: message,
      });
      process.exit(1);
    },
  );
}

async function coordinatorMain(argv: string[], hooks: CoordinatorHooks, log: Logger): Promise<number> {
  const args = parseArgs(argv, ['config', 'tls-dir', 'listen', 'key-holder-tls-dir']);
  if (!args.config)
    throw new Error(
      'usage: coordinator.js --config <job.json> [--tls-dir DIR] [--listen HOST[:PORT]] [--key-holder-tls-dir DIR]',
    );
  const { tf } = await import('@tensorguard/dp/tfjs');
  const { loadRunConfig } = await import('../config.js');
  const { loadTestSet, loadTrainSchema } = await import('../data/load.js');
  const { prepareModel } = await import('../job.js');
  const { DpClippingEngine } = await import('../clipping.js');
  const { Coordinator } = await import('./coordinator.js');
  const { readTlsDir, serverTls } = await import('../tls.js');
  const { resolvePresets } = await import('../hf/resolve.js');
  // Presets (model folder, text dataset) are fetched here, on the coordinator's node, if missing.
  const cfg = await resolvePresets(loadRunConfig(args.config));
  // --listen HOST[:PORT] (the Ray actor passes its node's IP, so workers on other nodes can dial
  // it) wins over the config's coordinator.host/port; loopback only when neither names a host.
  const listen = parseListen(args.listen, cfg.coordinator?.host ?? '127.0.0.1', cfg.coordinator?.port ?? 0);
  // --tls-dir: mutual TLS with the job's identities; a worker's identity is its certificate's.
  const identity = args['tls-dir'] ? readTlsDir(args['tls-dir']) : undefined;
  // Without identities a worker's id is whatever it claims: only processes of this machine may
  // reach such a server (tests and benchmarks that start the programs directly).
  if (!identity && !isLoopback(listen.host)) {
    throw new Error(
      `refusing to listen on ${listen.host} without TLS: workers on other hosts need the job's identities (--tls-dir); without it, listen on loopback only`,
    );
  }
  const train = loadTrainSchema(cfg);
  const test = loadTestSet(cfg);
  const prepared = prepareModel(cfg, train);
  log.info(
    { model: prepared.def.kind, parameters: prepared.parameters, testRecords: test.size },
    'model ready',
  );
  const keyHolder =
    cfg.secureAggregation.mode === 'he'
      ? await connectKeyHolder(cfg, log, identity, args['key-holder-tls-dir'])
      : undefined;
  const engine = new DpClippingEngine(prepared.def, prepared.initial);
  const tx = tf.tensor(test.features, [test.size, ...test.featureShape], test.dtype);
  const ty = tf.tensor1d(test.labels, 'int32');
  const coordinator = new Coordinator({
    config: cfg,
    ...prepared,
    evaluate: (p) => {
      engine.setTrainable(p);
      return engine.evaluate(tx, ty);
    },
    log,
    emit: emitLine,
    hooks,
    ...(keyHolder ? { keyHolder: keyHolder.link } : {}),
    ...(process.env.TENSORGUARD_STAGE_TIMEOUT_MS
      ? { stageTimeoutMs: Number(process.env.TENSORGUARD_STAGE_TIMEOUT_MS) }
      : {}),
    ...(process.env.TENSORGUARD_JOIN_GRACE_MS
      ? { joinGraceMs: Number(process.env.TENSORGUARD_JOIN_GRACE_MS) }
      : {}),
  });
  coordinator.resume();
  // The resolved spec beside the checkpoints, so that the job report can be rebuilt later.
  writeFileAtomic(path.join(cfg.checkpoint.dir, JOB_SPEC_FILE), JSON.stringify(cfg, null, 2) + '\n');
  const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
  const port = await coordinator.listen(`${host}:${listen.port}`, identity ? serverTls(identity) : undefined);
  const address = `${host}:${port}`;
  emitLine({ type: 'listening', address, tls: identity !== undefined });
  log.info({ address, tls: identity !== undefined }, 'listening');
  // SIGTERM (`ray job stop`, an operator's kill) or SIGINT ends the run as failed: the ledger holds
  // every round the gate let through, and the report, the done line and the exit code still come.
  // A second signal kills the process as usual.
  const stopOn = (signal: NodeJS.Signals) => {
    log.warn({ signal }, 'stopping the job on a signal');
    void coordinator.close(5000, `stopped by ${signal}`);
  };
  process.once('SIGTERM', stopOn);
  process.once('SIGINT', stopOn);
  const res = await coordinator.run();
  // hf-bert with LoRA: the trained adapter in PEFT's format beside the checkpoints.
  let adapter: string | null = null;
  if (res.status === 'succeeded') {
    const { writeJobAdapter } = await import('../models/peft.js');
    adapter = writeJobAdapter(cfg, prepared.def, coordinator.output);
    if (adapter) log.info({ adapter }, 'PEFT adapter written');
  }
  // The job report (report.html) next to the checkpoints, for every kind of job; a report that
  // cannot be built is logged and leaves the job's outcome as it is.
  try {
    const report = writeJobReport(cfg.checkpoint.dir);
    log.info({ report: report.file }, 'job report written');
  } catch (err) {
    log.warn({ err }, 'could not write the job report (rebuild it with `tensorguard report`)');
  }
  // Every worker is told the job is over before the server goes.
  await coordinator.close();
  await keyHolder?.close();
  emitLine({
    type: 'done',
    status: res.status,
    epsilon: res.epsilon,
    delta: res.delta,
    test_accuracy: res.testAccuracy,
    rounds: res.rounds,
    checkpoint: res.checkpoint,
    privacy_report: res.privacyReport,
    ...(adapter ? { adapter } : {}),
    stop_reason: res.stopReason,
    ...(res.error !== undefined ? { error: res.error } : {}),
  });
  return res.status === 'succeeded' ? 0 : 1;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** `HOST`, `HOST:PORT` or `[IPv6]:PORT`; an absent part keeps the default. */
function parseListen(v: string | undefined, host: string, port: number): { host: string; port: number } {
  if (v === undefined) return { host, port };
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d{1,5}))?$/.exec(v);
  if (!m) throw new Error(`--listen ${v}: expected HOST, HOST:PORT or [IPv6]:PORT`);
  return { host: m[1] ?? m[2]!, port: m[3] !== undefined ? Number(m[3]) : port };
}

/** secure-agg's key holder program, next to its service entry point (source or dist). */
export function secureAggKeyHolderScript(): string {
  const service = fileURLToPath(import.meta.resolve('@tensorguard/secure-agg/service'));
  return path.join(path.dirname(service), '..', 'bin', `key-holder${path.extname(service)}`);
}

/**
 * The HE key holder: the configured one, or secure-agg's key holder started here as a child with
 * the job's quorum as its floor and the key holder's identity `keyHolderTlsDir`. The link is mutual
 * TLS with this coordinator's identity (the key holder answers only the aggregator). Checks that it
 * decrypts sums of as few contributions as the job's quorum allows (otherwise a round the job may
 * release would be refused).
 */
async function connectKeyHolder(
  cfg: RunConfig,
  log: Logger,
  identity: TlsIdentity | undefined,
  keyHolderTlsDir: string | undefined,
): Promise<{ link: HeKeyHolderLink; close: () => Promise<void> }> {
  const { KeyHolderClient, spawnKeyHolder } = await import('@tensorguard/secure-agg/service');
  let address = cfg.secureAggregation.keyHolder;
  if (!identity)
    throw new Error(
      "secureAggregation.mode 'he' needs the job's identities: pass --tls-dir (the key holder serves mutual TLS only, and workers check its signature against the job's CA)",
    );
  if ((address === undefined) !== (keyHolderTlsDir !== undefined))
    throw new Error(
      address === undefined
        ? "secureAggregation.mode 'he' without secureAggregation.keyHolder starts the key holder here: pass its identity with --key-holder-tls-dir (pki.py's key_holder())"
        : `--key-holder-tls-dir is for a key holder started here; secureAggregation.keyHolder names one at ${address}`,
    );
  let stopChild = async () => {};
  if (address === undefined) {
    const child = await spawnKeyHolder(secureAggKeyHolderScript(), [
      '--min-inputs',
      String(cfg.secureAggregation.quorum),
      '--listen',
      '127.0.0.1:0',
      '--tls-dir',
      keyHolderTlsDir!,
      '--watch-stdin',
    ]);
    address = child.address;
    stopChild = child.close;
    log.info({ keyHolder: address, pid: child.child.pid }, 'started the HE key holder');
  }
  const client = new KeyHolderClient({
    address,
    tls: { rootCa: identity.ca, certChain: identity.cert, privateKey: identity.key },
  });
  let link: HeKeyHolderLink;
  try {
    link = await client.link();
    const t = cfg.secureAggregation.quorum;
    if (link.minInputs > t) {
      throw new Error(
        `the key holder at ${address} decrypts only sums of ≥ ${link.minInputs} contributions, more than secureAggregation.quorum ${t}; start it with --min-inputs ${t}`,
      );
    }
  } catch (err) {
    client.close();
    await stopChild();
    throw err;
  }
  log.info({ keyHolder: address, keyId: link.keyId, minInputs: link.minInputs }, 'HE key holder ready');
  return {
    link,
    close: async () => {
      client.close();
      await stopChild();
    },
  };
}
