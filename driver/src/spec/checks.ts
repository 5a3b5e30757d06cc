// Rules that span fields. They read the raw document defensively (any field may be missing or of
// the wrong type) so that they run next to zod's per-field checks: a spec with a bad clipNorm and
// both noiseMultiplier and targetEpsilon set gets both errors at once.
import { lanesIssue, THRESHOLD_ALIAS_NOTE } from '@tensorguard/worker/run-config';
import type { SpecIssue } from './errors.js';

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj | undefined =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : undefined;
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

export function crossFieldIssues(raw: unknown): SpecIssue[] {
  const out: SpecIssue[] = [];
  const spec = obj(raw);
  if (!spec) return out;
  const model = obj(spec.model);
  if (model?.kind === 'hf-bert' && (model.path === undefined) === (model.preset === undefined)) {
    out.push({
      path: 'model.path',
      message:
        "set exactly one of model.path (a Hugging Face model folder) and model.preset ('all-minilm-l6-v2')",
    });
  }
  const dataset = obj(spec.dataset);
  if (dataset) {
    if ((dataset.path === undefined) === (dataset.preset === undefined)) {
      out.push({
        path: 'dataset.path',
        message:
          "set exactly one of dataset.path and dataset.preset ('fashion-mnist', 'rotten-tomatoes', 'imdb')",
      });
    }
    if (dataset.preset === 'fashion-mnist' && (dataset.format === 'csv' || dataset.format === 'jsonl')) {
      out.push({ path: 'dataset.format', message: "preset 'fashion-mnist' needs format 'idx'" });
    }
    const textPreset = dataset.preset === 'rotten-tomatoes' || dataset.preset === 'imdb';
    if (textPreset && (dataset.format === 'idx' || dataset.format === 'jsonl')) {
      out.push({ path: 'dataset.format', message: `preset '${String(dataset.preset)}' needs format 'csv'` });
    }
    const modelKind = obj(spec.model)?.kind;
    if (
      (textPreset || dataset.textColumn !== undefined) &&
      modelKind !== undefined &&
      modelKind !== 'hf-bert'
    ) {
      out.push({
        path: textPreset ? 'dataset.preset' : 'dataset.textColumn',
        message:
          "text records are encoded with a Hugging Face model's tokenizer: use model.kind 'hf-bert' (model.preset or model.path)",
      });
    }
    if (dataset.format === 'idx' && (dataset.textColumn !== undefined || dataset.maxTokens !== undefined)) {
      out.push({
        path: dataset.textColumn !== undefined ? 'dataset.textColumn' : 'dataset.maxTokens',
        message: 'applies to text data (format csv or jsonl) only',
      });
    }
    if (
      (dataset.format === 'csv' || dataset.format === 'jsonl') &&
      !textPreset &&
      dataset.numClasses === undefined &&
      dataset.sharding !== 'files'
    ) {
      out.push({
        path: 'dataset.numClasses',
        message: `is required for ${String(dataset.format)} data: the coordinator reads no training record, so it cannot count the classes`,
      });
    }
    // The worker's own rules for 'files' (worker-ts/src/config.ts), checked here too so that such a
    // spec exits 2 before submission instead of failing inside the job.
    if (dataset.sharding === 'files') {
      if (dataset.format === 'idx') {
        out.push({
          path: 'dataset.sharding',
          message:
            "'files' needs format csv or jsonl with dataset.path a directory of such files; IDX is one file per split: use 'hash'",
        });
      }
      if (dataset.numClasses === undefined) {
        out.push({
          path: 'dataset.numClasses',
          message:
            "is required with sharding 'files' (each worker reads only its own files, so the class count cannot be inferred)",
        });
      }
      if (dataset.trainExamples !== undefined) {
        out.push({
          path: 'dataset.trainExamples',
          message: "applies to sharding 'hash' and 'contiguous' only; with 'files', choose the files instead",
        });
      }
    }
  }
  const privacy = obj(spec.privacy);
  if (privacy) {
    if ((privacy.noiseMultiplier === undefined) === (privacy.targetEpsilon === undefined)) {
      out.push({
        path: 'privacy.noiseMultiplier',
        message: 'set exactly one of privacy.noiseMultiplier and privacy.targetEpsilon',
      });
    }
    if ((privacy.samplingRate === undefined) === (privacy.expectedBatchSize === undefined)) {
      out.push({
        path: 'privacy.samplingRate',
        message: 'set exactly one of privacy.samplingRate and privacy.expectedBatchSize',
      });
    }
    const target = num(privacy.targetEpsilon);
    const budget = num(privacy.epsilonBudget);
    if (target !== undefined && budget !== undefined && target > budget) {
      out.push({
        path: 'privacy.targetEpsilon',
        message: `${target} exceeds privacy.epsilonBudget ${budget}`,
      });
    }
  }
  const workers = obj(spec.workers);
  const lanes = num(workers?.lanes);
  const cpus = workers?.cpusPerWorker === undefined ? 1 : num(workers.cpusPerWorker);
  // The run config's own rule and words (the thread budget is what the Ray launcher gives a worker).
  if (lanes !== undefined && Number.isInteger(lanes) && cpus !== undefined && cpus > 0) {
    const message = lanesIssue(lanes, cpus);
    if (message) out.push({ path: 'workers.lanes', message });
  }
  const gpus = num(workers?.gpusPerWorker);
  if (lanes !== undefined && lanes > 1 && gpus !== undefined && gpus > 0) {
    // Each lane is a TensorFlow runtime of its own: on a GPU each would hold a CUDA context and
    // reserve most of the device's memory for itself.
    out.push({
      path: 'workers.lanes',
      message:
        `${lanes} lane processes on a GPU worker (workers.gpusPerWorker = ${gpus}): lanes are for CPU workers, ` +
        'each would start its own CUDA context and memory pool; set workers.lanes to 1',
    });
  }
  const sa = obj(spec.secureAggregation);
  const count = num(workers?.count);
  // The quorum (fewest contributors per round); `threshold` is its old name, read the same way.
  // Issues name the field the spec wrote.
  const qField = `secureAggregation.${sa?.quorum === undefined && sa?.threshold !== undefined ? 'threshold' : 'quorum'}`;
  if (sa?.quorum !== undefined && sa.threshold !== undefined) {
    out.push({
      path: 'secureAggregation.threshold',
      message: `is ${THRESHOLD_ALIAS_NOTE}: give only quorum`,
    });
  }
  const t = num(sa?.quorum ?? sa?.threshold);
  if (t !== undefined && count !== undefined && Number.isInteger(t) && t > count) {
    out.push({ path: qField, message: `${t} exceeds workers.count ${count}` });
  }
  const colluders = num(privacy?.colluders);
  if (colluders !== undefined && t !== undefined && count !== undefined) {
    const quorum = Number.isInteger(t) ? t : Math.ceil(t * count);
    if (colluders >= quorum) {
      out.push({
        path: 'privacy.colluders',
        message: `${colluders} colluders need ${qField} above them (it resolves to ${quorum}): a quorum must hold an honest worker's noise`,
      });
    }
  }
  // Specs that validate but cannot run: secure aggregation needs two contributors per round, or
  // the released "sum" is one worker's update (and the coordinator's quorum check has nothing to
  // protect); the workers would otherwise start and fail at the first round.
  if (count === 1) {
    out.push({
      path: 'workers.count',
      message: `${count} worker cannot run: secure aggregation needs at least 2 workers (a sum over one worker is that worker's update); set workers.count to 2 or more`,
    });
  } else if (sa?.mode !== 'he' && t !== undefined && count !== undefined && count >= 2) {
    const tCount = Number.isInteger(t) ? t : Math.ceil(t * count);
    if (tCount < 2) {
      out.push({
        path: qField,
        message: `resolves to ${tCount}; secure aggregation needs at least 2 contributors per round (a sum over one worker is that worker's update)`,
      });
    }
  }
  if (sa?.mode === 'he' && t !== undefined && count !== undefined && count >= 2) {
    const tCount = Number.isInteger(t) ? t : Math.ceil(t * count);
    if (tCount < 2) {
      out.push({
        path: qField,
        message: `resolves to ${tCount}; mode 'he' needs at least 2 (the key holder never decrypts one worker's ciphertext)`,
      });
    }
  }
  if (sa?.keyHolder !== undefined && sa.mode !== 'he') {
    out.push({
      path: 'secureAggregation.keyHolder',
      message: "applies to mode 'he' only; remove it or set mode 'he'",
    });
  }
  return out;
}
