// @tensorguard/worker/report: the job report (metrics.jsonl, report.html) without TensorFlow, so
// that the driver's CLI can build reports without loading the native backend.
export {
  METRICS_FILE,
  MetricsFileError,
  RoundMetricsLog,
  readRoundMetrics,
  type RoundMetrics,
} from './metrics-log.js';
export {
  ADAPTER_DIR,
  JOB_SPEC_FILE,
  JobReportError,
  PRIVACY_REPORT_FILE,
  REPORT_FILE,
  chartData,
  escapeHtml,
  formatEpsilon,
  loadJobReport,
  renderJobReport,
  writeJobReport,
  type JobReportInput,
} from './html.js';
