// OpenTelemetry for TensorGuard's programs (the worker, the coordinator, and `tensorguard serve`
// through the `@tensorguard/worker/telemetry` entry point, which loads no TensorFlow). Spans go
// through @opentelemetry/api, a no-op until an SDK registers; `startTelemetry` registers the Node
// SDK with OTLP/gRPC exporters when OTEL_EXPORTER_OTLP_ENDPOINT is set (the SDK reads the other
// OTEL_* variables itself). Loaded on demand, so a run without telemetry never pays for it.
export interface Telemetry {
  enabled: boolean;
  /** Flushes what is buffered; call before the process exits. */
  shutdown(): Promise<void>;
}

export async function startTelemetry(env: NodeJS.ProcessEnv, serviceName: string): Promise<Telemetry> {
  if (!env.OTEL_EXPORTER_OTLP_ENDPOINT) return { enabled: false, shutdown: async () => {} };
  let mods;
  try {
    mods = await Promise.all([
      import('@opentelemetry/sdk-node'),
      import('@opentelemetry/exporter-trace-otlp-grpc'),
      import('@opentelemetry/exporter-metrics-otlp-grpc'),
      import('@opentelemetry/sdk-metrics'),
    ]);
  } catch (err) {
    // An operator who asked for telemetry must not silently get none.
    throw new Error(
      `OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK does not load (${(err as Error).message}); ` +
        'run `npm run setup`, or unset the variable',
      { cause: err },
    );
  }
  const [{ NodeSDK }, { OTLPTraceExporter }, { OTLPMetricExporter }, { PeriodicExportingMetricReader }] =
    mods;
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
