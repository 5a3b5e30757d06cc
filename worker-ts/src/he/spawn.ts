// Starting the key holder as a child of the coordinator (the default when the config names no
// `secureAggregation.keyHolder`): same Node runtime and loader flags as the parent, listening on
// loopback, its stdout read here (so the coordinator's stdout contract is unchanged) and its stderr
// (pino logs) passed through. The child exits when its stdin closes, so it cannot outlive a
// coordinator that is SIGKILLed.
import { spawn, type ChildProcess } from 'node:child_process';

export interface SpawnedKeyHolder {
  address: string;
  child: ChildProcess;
  /** Stops the child (SIGTERM) and waits for it to exit. */
  close(): Promise<void>;
}

/**
 * Spawns `script` (bin/key-holder.{js,ts}) with `--config configFile`. Resolves once it prints its
 * `listening` line; rejects with its exit code if it exits first or after `timeoutMs`.
 */
export function spawnKeyHolder(
  script: string,
  configFile: string,
  timeoutMs = 60_000,
): Promise<SpawnedKeyHolder> {
  const child = spawn(
    process.execPath,
    [...process.execArgv, script, '--config', configFile, '--listen', '127.0.0.1:0', '--watch-stdin', 'yes'],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the key holder did not start within ${timeoutMs} ms`));
    }, timeoutMs);
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          const l = JSON.parse(line) as Record<string, unknown>;
          if (l.type === 'listening' && typeof l.address === 'string') {
            clearTimeout(timer);
            resolve({ address: l.address, child, close });
          }
        } catch {
          // not a JSON line
        }
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the key holder exited before listening (${signal ?? `code ${code}`})`));
    });
  });
}
