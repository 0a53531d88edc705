// Starts the OpenTelemetry SDK when the standard OTEL_* settings ask for traces: an OTLP/HTTP endpoint
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), and neither OTEL_SDK_DISABLED=true nor
// OTEL_TRACES_EXPORTER=none. Otherwise nothing is loaded and runtime/base/tracing.ts stays off. The SDK reads the
// rest itself: OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_*_HEADERS, OTEL_BSP_*.
import type { Logger } from "./logger.ts";
import { tracing } from "./tracing.ts";

export interface TracingHandle {
  /** Exports the spans still buffered and stops the SDK; bounded, so a dead collector cannot hold up an exit. */
  shutdown(): Promise<void>;
}

const NOTHING: TracingHandle = { shutdown: async () => undefined };

/** Why tracing stays off under these settings, or undefined when it is to be on. */
export function tracingOffReason(env: NodeJS.ProcessEnv): string | undefined {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === "true") return "OTEL_SDK_DISABLED=true";
  const exporters = (env.OTEL_TRACES_EXPORTER ?? "otlp").split(",").map((e) => e.trim().toLowerCase());
  if (exporters.includes("none")) return "OTEL_TRACES_EXPORTER=none";
  if (!exporters.includes("otlp")) return `OTEL_TRACES_EXPORTER=${env.OTEL_TRACES_EXPORTER} (only otlp is built in)`;
  if (!env.OTEL_EXPORTER_OTLP_ENDPOINT && !env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
    return "no OTEL_EXPORTER_OTLP_ENDPOINT";
  const protocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL;
  if (protocol !== undefined && protocol !== "http/json" && protocol !== "http/protobuf")
    return `OTEL_EXPORTER_OTLP_PROTOCOL=${protocol} (only OTLP over HTTP is built in)`;
  return undefined;
}

/**
 * Starts tracing for this process, named `serviceName` unless OTEL_SERVICE_NAME names it. Once per process: the
 * SDK registers itself globally (tracer provider, W3C propagator, AsyncLocalStorage context).
 */
export async function startTracing(
  serviceName: string,
  logger: Logger,
  env: NodeJS.ProcessEnv = process.env,
): Promise<TracingHandle> {
  const off = tracingOffReason(env);
  if (off !== undefined) {
    logger.debug({ reason: off }, "tracing off");
    return NOTHING;
  }
  if (tracing.on) return NOTHING;
  const [{ NodeTracerProvider }, { BatchSpanProcessor }, { OTLPTraceExporter }, resources] = await Promise.all([
    import("@opentelemetry/sdk-trace-node"),
    import("@opentelemetry/sdk-trace-base"),
    import("@opentelemetry/exporter-trace-otlp-http"),
    import("@opentelemetry/resources"),
  ]);
  const resource = resources
    .resourceFromAttributes({ "service.name": serviceName })
    .merge(resources.detectResources({ detectors: [resources.envDetector] }));
  const provider = new NodeTracerProvider({
    resource,
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())],
  });
  // No context manager: the runtime passes each span's parent itself (runtime/base/tracing.ts), and the default
  // one's hooks on every promise would cost every call. The W3C propagator is not needed either: the traceparent
  // travels in the MIG header.
  provider.register({ contextManager: null, propagator: null });
  tracing.on = true;
  logger.info(
    {
      endpoint: env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT,
      service: resource.attributes["service.name"],
    },
    "tracing on: exporting spans over OTLP/HTTP",
  );
  return {
    async shutdown() {
      tracing.on = false;
      await Promise.race([provider.shutdown(), new Promise((r) => setTimeout(r, SHUTDOWN_BOUND_MS).unref())]).catch(
        (err: unknown) => logger.warn({ err: (err as Error).message }, "tracing: the last spans were not exported"),
      );
    },
  };
}

const SHUTDOWN_BOUND_MS = 3_000;
