export type { Benchmark, BenchOptions, BenchResult, Row } from './types.js';
export { formatTable } from './table.js';
