// The `tensorguard` command line: a dispatcher over driver/src/commands/*.ts.
import { command as demo } from './commands/demo.js';
import { command as doctor } from './commands/doctor.js';
import { command as list } from './commands/list.js';
import { command as logs } from './commands/logs.js';
import { command as privacy } from './commands/privacy.js';
import { command as report } from './commands/report.js';
import { command as status } from './commands/status.js';
import { command as stop } from './commands/stop.js';
import { command as train } from './commands/train.js';
import { command as serve } from './commands/serve.js';
import { type Command, type Io, UsageError } from './commands/types.js';

/** Every sub-command, in the order `--help` lists them. Commands register here. */
export const COMMANDS: Command[] = [demo, doctor, serve, train, status, logs, stop, list, privacy, report];

export function helpText(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'usage: tensorguard <command> [options]',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    "Run `tensorguard <command> --help` for a command's options.",
  ].join('\n');
}

/** Runs one command line (without the program name) and returns the exit code. */
export async function runCli(argv: string[], io: Io): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.stdout(helpText() + '\n');
    return name === undefined ? 2 : 0;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) {
    io.stderr(
      `tensorguard: unknown command "${name}"; commands: ${COMMANDS.map((c) => c.name).join(', ')}\n`,
    );
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.stdout(cmd.usage + '\n');
    return 0;
  }
  try {
    return await cmd.run(rest, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`tensorguard ${cmd.name}: ${err.message}\n\n${cmd.usage}\n`);
      return 2;
    }
    throw err;
  }
}
