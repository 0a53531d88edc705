// Every check of the harness, in run order; the checks across all answers come last so they see everything.

import type { Check } from "../check.ts";
import { answerChecks, envelopeSchemas } from "./answers.ts";
import { coreHttpChecks } from "./core-http.ts";
import { coreInflightGrpcChecks, coreInflightHttpChecks } from "./core-inflight.ts";
import { eventedHttpChecks } from "./evented-http.ts";
import { fullHttpChecks } from "./full-http.ts";
import { coreGrpcChecks, eventedGrpcChecks, streamingGrpcChecks } from "./grpc.ts";
import { mcpCorrelationChecks } from "./mcp-correlation.ts";
import { mcpInteropChecks } from "./mcp-interop.ts";
import { coreNatsChecks, eventedNatsChecks } from "./nats.ts";
import { eventedNatsEventChecks } from "./nats-events.ts";
import { streamingNatsChecks } from "./nats-stream.ts";
import { httpRouteChecks } from "./routes-http.ts";
import { streamingFlowChecks } from "./streaming-flow.ts";
import { streamingHttpChecks } from "./streaming-http.ts";
import { streamingSseChecks } from "./streaming-sse.ts";

export const ALL_CHECKS: readonly Check[] = [
  envelopeSchemas,
  ...coreHttpChecks,
  ...coreInflightHttpChecks,
  ...httpRouteChecks,
  ...coreNatsChecks,
  ...coreGrpcChecks,
  ...coreInflightGrpcChecks,
  ...streamingHttpChecks,
  ...streamingFlowChecks,
  ...streamingSseChecks,
  ...streamingNatsChecks,
  ...streamingGrpcChecks,
  ...eventedHttpChecks,
  ...eventedGrpcChecks,
  ...eventedNatsChecks,
  ...eventedNatsEventChecks,
  ...fullHttpChecks,
  ...mcpInteropChecks,
  ...mcpCorrelationChecks,
  ...answerChecks,
];
