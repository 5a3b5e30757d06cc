// Runs the TypeScript block of dp/src/tfjs/README.md so that the example cannot rot.
import { expect } from 'chai';
import fs from 'node:fs';
import { pathToFileURL } from 'node:url';

describe('dp/src/tfjs/README.md', () => {
  it('its example runs and prints what its comments say', async () => {
    const readme = fs.readFileSync(new URL('./README.md', import.meta.url), 'utf8');
    const block = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block, 'a ```ts block').to.be.a('string');
    // Inside dp/dist (ignored by git) so that '@tensorguard/dp/tfjs' resolves through the workspace.
    const dir = new URL('../../dist/', import.meta.url);
    fs.mkdirSync(dir, { recursive: true });
    const file = new URL(`readme-tfjs-example-${process.pid}.ts`, dir);
    const lines: string[] = [];
    const log = console.log;
    fs.writeFileSync(file, block!);
    console.log = (...args: unknown[]) => void lines.push(args.map(String).join(' '));
    try {
      await import(pathToFileURL(file.pathname).href);
    } finally {
      console.log = log;
      fs.rmSync(file, { force: true });
    }
    expect(lines).to.deep.equal(['32 26010', 'true']);
  });
});
