/** One benchmark: a module in bench/src/benchmarks/<name>.ts exporting `benchmark`. */
export interface Benchmark {
  /** One line on what is measured, printed above the table. */
  description: string;
  run(options: BenchOptions): Promise<BenchResult>;
}

export interface BenchOptions {
  /** A smaller, faster configuration (--quick). */
  quick: boolean;
  /** Repository root, for finding .venv, datasets and scripts. */
  root: string;
  /** Extra command-line arguments after the benchmark's name. */
  args: string[];
  /** Progress lines for the person watching (stderr). */
  log: (line: string) => void;
}

export type Row = Record<string, string | number | boolean | null>;

export interface BenchResult {
  rows: Row[];
  /** Headline numbers, documented in bench/README.md; keys are stable. */
  summary: Record<string, number>;
}
