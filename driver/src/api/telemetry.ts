// OpenTelemetry for the API server. Spans and metrics go through @opentelemetry/api, which is a
// no-op until an SDK registers; `startTelemetry` registers the Node SDK with OTLP/gRPC exporters
// when OTEL_EXPORTER_OTLP_ENDPOINT is set (the SDK reads the other OTEL_* variables itself).
import { metrics, trace } from '@opentelemetry/api';

export const tracer = trace.getTracer('@tensorguard/driver/api');
export const meter = metrics.getMeter('@tensorguard/driver/api');

/** The SDK packages this needs (driver dependencies; see docs/api.md, "Observability"). */
export const OTEL_SDK_PACKAGES = [
  '@opentelemetry/sdk-node',
  '@opentelemetry/exporter-trace-otlp-grpc',
  '@opentelemetry/exporter-metrics-otlp-grpc',
  '@opentelemetry/sdk-metrics',
] as const;

export interface Telemetry {
  enabled: boolean;
  shutdown(): Promise<void>;
}

// The SDK is optional: imported by name at run time so that the build does not need it.
const importOptional = (name: string): Promise<Record<string, unknown>> =>
  import(name) as Promise<Record<string, unknown>>;

/**
 * Starts the OpenTelemetry Node SDK when OTEL_EXPORTER_OTLP_ENDPOINT is set. Throws, naming the
 * packages to install, when the variable is set but the SDK is missing: an operator who asked
 * for telemetry must not silently get none.
 */
export async function startTelemetry(
  env: NodeJS.ProcessEnv,
  serviceName = 'tensorguard-api',
): Promise<Telemetry> {
  if (!env.OTEL_EXPORTER_OTLP_ENDPOINT) return { enabled: false, shutdown: async () => {} };
  let mods: Record<string, unknown>[];
  try {
    mods = await Promise.all(OTEL_SDK_PACKAGES.map(importOptional));
  } catch (err) {
    throw new Error(
      `OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not installed (${(err as Error).message}); ` +
        `install ${OTEL_SDK_PACKAGES.join(', ')} or unset the variable`,
      { cause: err },
    );
  }
  const [sdkNode, traceExp, metricExp, sdkMetrics] = mods as [
    { NodeSDK: new (o: Record<string, unknown>) => { start(): void; shutdown(): Promise<void> } },
    { OTLPTraceExporter: new () => unknown },
    { OTLPMetricExporter: new () => unknown },
    { PeriodicExportingMetricReader: new (o: Record<string, unknown>) => unknown },
  ];
  env.OTEL_SERVICE_NAME ??= serviceName;
  const sdk = new sdkNode.NodeSDK({
    traceExporter: new traceExp.OTLPTraceExporter(),
    metricReaders: [
      new sdkMetrics.PeriodicExportingMetricReader({ exporter: new metricExp.OTLPMetricExporter() }),
    ],
  });
  sdk.start();
  return { enabled: true, shutdown: () => sdk.shutdown() };
}
