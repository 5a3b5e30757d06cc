// ε of planned rounds, for the submit-time budget check and the local-process job. The RDP
// accountant lives in worker-ts (the coordinator's), whose package entry point also loads
// libtensorflow (~3 s, ~450 MB): far too heavy for the API server. Until @tensorguard/dp exports
// the accountant, this loads only worker-ts's privacy module, by file. One place to change then.
import fs from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { RdpAccountant } from '@tensorguard/worker';

export interface RdpModule {
  RDP_ORDERS: number[];
  RdpAccountant: typeof RdpAccountant;
}

let loaded: Promise<RdpModule> | undefined;

/** Loads worker-ts's RDP accountant module (source under tsx, compiled otherwise); cached. */
export function loadRdp(): Promise<RdpModule> {
  loaded ??= (async () => {
    const here = fileURLToPath(import.meta.url);
    const fromSource = here.endsWith('.ts');
    const url = new URL(
      fromSource
        ? '../../../worker-ts/src/coordinator/privacy.ts'
        : '../../../worker-ts/dist/coordinator/privacy.js',
      import.meta.url,
    );
    if (!fs.existsSync(url)) {
      throw new Error(`the RDP accountant module is missing at ${fileURLToPath(url)}; run \`npm run build\``);
    }
    return (await import(pathToFileURL(fileURLToPath(url)).href)) as RdpModule;
  })();
  return loaded;
}

export interface PlanParameters {
  /** q: Poisson sampling rate per round. */
  samplingRate: number;
  /** σ: noise multiplier with a full quorum. */
  noiseMultiplier: number;
  delta: number;
  rounds: number;
}

/** ε after each of rounds 1..rounds (index r-1), composing the same mechanism every round. */
export async function epsilonSchedule(p: PlanParameters): Promise<number[]> {
  const { RdpAccountant } = await loadRdp();
  const acc = new RdpAccountant();
  const out: number[] = [];
  for (let r = 1; r <= p.rounds; r++) {
    acc.record({ round: r, samplingRate: p.samplingRate, noiseMultiplier: p.noiseMultiplier, survivors: 1 });
    out.push(acc.epsilon(p.delta));
  }
  return out;
}
