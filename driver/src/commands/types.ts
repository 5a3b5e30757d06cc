/** Where a command writes; tests pass buffers, the CLI passes the process streams. */
export interface Io {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Aborted on Ctrl-C (SIGINT) or SIGTERM; long-running commands stop cleanly when it fires. */
  signal: AbortSignal;
  env: NodeJS.ProcessEnv;
  cwd: string;
}

/** One `tensorguard <name>` sub-command, in driver/src/commands/<name>.ts. */
export interface Command {
  name: string;
  /** One line for `tensorguard --help`. */
  summary: string;
  /** Full usage text for `tensorguard <name> --help`. */
  usage: string;
  /** Returns the process exit code: 0 ok, 1 failure, 2 bad arguments. */
  run(args: string[], io: Io): Promise<number>;
}

/** Thrown for bad command-line arguments; the CLI prints the message and the usage, exit 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}
