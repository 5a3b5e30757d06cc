// Child processes as the benchmarks that time whole jobs see them: every output line with its
// arrival time, and a wait that fails fast (with the last lines) when a process exits early.
import { spawn, type ChildProcess } from 'node:child_process';

/** A child whose stdout/stderr lines are kept with their arrival time (ms since `t0`). */
export interface Watched {
  child: ChildProcess;
  lines: { t: number; stream: 'out' | 'err'; text: string }[];
  exited: Promise<number | null>;
}

export function watch(cmd: string, args: string[], env: NodeJS.ProcessEnv, t0: number, cwd: string): Watched {
  const child = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const w: Watched = {
    child,
    lines: [],
    exited: new Promise((resolve) => child.on('exit', (code) => resolve(code))),
  };
  for (const stream of ['out', 'err'] as const) {
    let buf = '';
    (stream === 'out' ? child.stdout! : child.stderr!).on('data', (d: Buffer) => {
      const t = performance.now() - t0;
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        w.lines.push({ t, stream, text: buf.slice(0, i) });
        buf = buf.slice(i + 1);
      }
    });
  }
  return w;
}

export async function until<T>(
  what: string,
  f: () => T | undefined,
  timeoutMs: number,
  alive: Watched[],
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    const dead = alive.find((w) => w.child.exitCode !== null);
    if (dead || Date.now() > deadline) {
      const tail = alive.flatMap((w) => w.lines.map((l) => l.text)).slice(-30);
      throw new Error(`${dead ? 'a process exited' : 'timed out'} waiting for ${what}:\n${tail.join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}
