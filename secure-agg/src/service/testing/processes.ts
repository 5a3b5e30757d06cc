// Real processes for service tests: a TypeScript entry point started without a build (tsx), its
// JSON stdout lines collected for the test to wait on.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The secure-agg package folder. */
export const pkg = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Spawns a TypeScript entry point without a build; collects its JSON stdout lines. */
export function start(script: string, args: string[]) {
  const child = spawn(
    process.execPath,
    ['--conditions=tensorguard-source', '--import', 'tsx', script, ...args],
    {
      cwd: pkg,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const lines: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  readline.createInterface({ input: child.stdout! }).on('line', (l) => {
    try {
      lines.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      return;
    }
    waiters.splice(0).forEach((w) => w());
  });
  const next = async (pred: (l: Record<string, unknown>) => boolean, timeoutMs = 30_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = lines.find(pred);
      if (hit) {
        lines.splice(lines.indexOf(hit), 1);
        return hit;
      }
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for output; stderr: ${stderr.slice(-2000)}`);
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 200);
      });
    }
  };
  return { child, next, stderr: () => stderr };
}

export function exited(child: ChildProcess): Promise<NodeJS.Signals | number | null> {
  if (child.exitCode !== null || child.signalCode !== null)
    return Promise.resolve(child.signalCode ?? child.exitCode);
  return new Promise((r) => child.once('exit', (code, sig) => r(sig ?? code)));
}
