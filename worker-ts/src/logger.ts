// pino JSON logs on stderr (stdout carries the metric lines). Redaction is a backstop: the code
// never passes data, gradients, keys or per-example statistics to the logger in the first place.
import { pino, destination, type Logger } from 'pino';

export function createLogger(
  role: 'worker' | 'coordinator' | 'key-holder',
  bindings: Record<string, unknown> = {},
): Logger {
  return pino(
    {
      name: `tensorguard-${role}`,
      level: process.env.TENSORGUARD_LOG_LEVEL ?? 'info',
      base: { role, pid: process.pid, job: process.env.TENSORGUARD_JOB_ID, ...bindings },
      redact: {
        paths: [
          '*.vector',
          '*.gradient',
          '*.gradients',
          '*.params',
          '*.privateKey',
          '*.shares',
          '*.share',
          '*.sum',
          '*.data',
          '*.features',
        ],
        censor: '[redacted]',
      },
    },
    destination(2),
  );
}
export type { Logger };
