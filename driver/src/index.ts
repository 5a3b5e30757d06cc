// Public surface of @tensorguard/driver.

// Job spec: validation, loading, resolution to the run config.
export * from './spec/index.js';
// Ray: Jobs REST client, local head, cluster discovery, job submission and following.
export * from './ray/index.js';
