// The run config's one schema (schema.ts) and its error wording (issues.ts), for the driver and
// the JSON schema export (scripts/run-config-schema.mjs). Pure zod: no TensorFlow is loaded.
export * from './schema.js';
export { describe, issuesFromZod, pathString, type RunConfigIssue } from './issues.js';
