// `tensorguard privacy`: ε of a DP-SGD run, or σ for a target ε. The command itself (flags,
// validation, output) lives in @tensorguard/dp's privacy-cli so that its accountant and its
// messages are tested there; this file only registers it and maps its result to the CLI's streams.
import { PRIVACY_USAGE, runPrivacyCommand } from '@tensorguard/dp';
import type { Command } from './types.js';

export const command: Command = {
  name: 'privacy',
  summary: 'ε of a DP-SGD run (RDP or PLD), or the noise multiplier for a target ε',
  usage: PRIVACY_USAGE.trimEnd(),
  run(args, io) {
    const r = runPrivacyCommand(args);
    if (r.stdout) io.stdout(r.stdout);
    if (r.stderr) io.stderr(r.stderr);
    return Promise.resolve(r.exitCode);
  },
};
