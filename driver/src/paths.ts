import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The repository root: the folder with the workspaces, .venv and node_modules. Found by walking
 * up from this file (works from src/ under tsx and from dist/), overridable with TENSORGUARD_ROOT.
 */
export function repoRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TENSORGUARD_ROOT) return path.resolve(env.TENSORGUARD_ROOT);
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (fs.existsSync(path.join(dir, 'scripts', 'setup.mjs')) && fs.existsSync(path.join(dir, 'driver')))
      return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find the TensorGuard repository root; set TENSORGUARD_ROOT');
    dir = up;
  }
}

/** The project's Python (the .venv that the setup creates, with Ray). */
export function venvPython(root = repoRoot()): string {
  return path.join(root, '.venv', 'bin', 'python');
}
