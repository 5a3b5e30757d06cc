// OpenTelemetry for the worker and coordinator programs. Spans (`round.<phase>`, see metrics.ts)
// go through @opentelemetry/api, a no-op until an SDK registers; `startTelemetry` registers the
// Node SDK with OTLP/gRPC exporters when OTEL_EXPORTER_OTLP_ENDPOINT is set (the SDK reads the
// other OTEL_* variables itself). Loaded on demand, so a run without telemetry never pays for it.
export interface Telemetry {
  enabled: boolean;
  /** Flushes what is buffered; call before the process exits. */
  shutdown(): Promise<void>;
}

export async function startTelemetry(env: NodeJS.ProcessEnv, serviceName: string): Promise<Telemetry> {
  if (!env.OTEL_EXPORTER_OTLP_ENDPOINT) return { enabled: false, shutdown: async () => {} };
  const [{ NodeSDK }, { OTLPTraceExporter }, { OTLPMetricExporter }, { PeriodicExportingMetricReader }] =
    await Promise.all([
      import('@opentelemetry/sdk-node'),
      import('@opentelemetry/exporter-trace-otlp-grpc'),
      import('@opentelemetry/exporter-metrics-otlp-grpc'),
      import('@opentelemetry/sdk-metrics'),
    ]);
  env.OTEL_SERVICE_NAME ??= serviceName;
  const sdk = new NodeSDK({
    traceExporter: new OTLPTraceExporter(),
    metricReaders: [new PeriodicExportingMetricReader({ exporter: new OTLPMetricExporter() })],
  });
  sdk.start();
  return {
    enabled: true,
    // A collector that went away must not keep a finished job from exiting.
    shutdown: () =>
      Promise.race([sdk.shutdown().catch(() => {}), new Promise<void>((r) => setTimeout(r, 5000).unref())]),
  };
}
