// Starting the HE key holder as a child process (the aggregator does when its config names no
// `keyHolder`; worker-ts's coordinator likewise): same Node runtime and loader flags as the parent,
// its stdout read here (so the parent's stdout contract is unchanged) and its stderr (pino logs)
// passed through. With `--watch-stdin` in `args` the child exits when its stdin closes, so it
// cannot outlive a parent that is SIGKILLed.
import { spawn, type ChildProcess } from 'node:child_process';
import { UnavailableError } from '../index.js';

export interface SpawnedKeyHolder {
  /** host:port the child listens on. */
  address: string;
  keyId: string | undefined;
  child: ChildProcess;
  /** Stops the child (SIGTERM) and waits for it to exit. */
  close(): Promise<void>;
}

/**
 * Spawns `script` (a key-holder entry point) with `args`. Resolves once it prints its ready line, a
 * JSON object with `address` and `"event": "listening"` (secure-agg's bins) or `"type": "listening"`
 * (worker-ts's metric-line convention); rejects with UnavailableError if it exits first or after
 * `timeoutMs`.
 */
export function spawnKeyHolder(
  script: string,
  args: readonly string[],
  timeoutMs = 60_000,
): Promise<SpawnedKeyHolder> {
  const child = spawn(process.execPath, [...process.execArgv, script, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new UnavailableError(`the key holder did not start within ${timeoutMs} ms`));
    }, timeoutMs);
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        let l: Record<string, unknown>;
        try {
          l = JSON.parse(line) as Record<string, unknown>;
        } catch {
          continue; // not a JSON line
        }
        if ((l.event === 'listening' || l.type === 'listening') && typeof l.address === 'string') {
          clearTimeout(timer);
          const keyId = l.keyId ?? l.key_id;
          resolve({ address: l.address, keyId: typeof keyId === 'string' ? keyId : undefined, child, close });
        }
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new UnavailableError(`the key holder exited before listening (${signal ?? `code ${code}`})`));
    });
  });
}
