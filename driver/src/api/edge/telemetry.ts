// OpenTelemetry for the API server. Spans and metrics go through @opentelemetry/api, which is a
// no-op until an SDK registers; `startTelemetry` registers the Node SDK with OTLP/gRPC exporters
// when OTEL_EXPORTER_OTLP_ENDPOINT is set (the SDK reads the other OTEL_* variables itself).
import { metrics, trace } from '@opentelemetry/api';

export const tracer = trace.getTracer('@tensorguard/driver/api');
export const meter = metrics.getMeter('@tensorguard/driver/api');

// Starting the SDK is shared with the worker and coordinator programs.
export { startTelemetry, type Telemetry } from '@tensorguard/worker/telemetry';
