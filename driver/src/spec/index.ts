export { jobSpecSchema, type JobSpec, type JobSpecInput } from './schema.js';
export { JobSpecError, formatIssues, type SpecIssue } from './errors.js';
export { loadJobSpec, parseJobSpec, validateJobSpec, resolvePaths, type ValidationResult } from './parse.js';
export {
  resolveRunConfig,
  calibrateNoiseMultiplier,
  type ResolveOptions,
  type RunConfigJson,
} from './resolve.js';
export { DEMO_WORKERS, demoSpec, demoSpecInput } from './demo.js';
export {
  DEFAULT_DOCUMENT_LIMITS,
  DocumentError,
  checkValueBounds,
  parseDocumentText,
  prescanText,
  type DocumentLimits,
} from './bounded-yaml.js';
