/** `--name value` pairs; throws naming the first unknown or valueless flag. */
export function parseArgs(argv: string[], known: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const name = a.replace(/^--/, '');
    if (!a.startsWith('--') || !known.includes(name))
      throw new Error(`unknown argument '${a}' (expected ${known.map((k) => '--' + k).join(', ')})`);
    const v = argv[++i];
    if (v === undefined) throw new Error(`${a} needs a value`);
    out[name] = v;
  }
  return out;
}
