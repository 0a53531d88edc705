// Every check of the harness, in run order; the checks across all answers come last so they see everything.

import type { Check } from "../check.ts";
import { answerChecks, envelopeSchemas } from "./answers.ts";
import { coreHttpChecks } from "./core-http.ts";
import { eventedHttpChecks } from "./evented-http.ts";
import { fullHttpChecks } from "./full-http.ts";
import { coreGrpcChecks, eventedGrpcChecks, streamingGrpcChecks } from "./grpc.ts";
import { coreNatsChecks, eventedNatsChecks } from "./nats.ts";
import { streamingHttpChecks } from "./streaming-http.ts";

export const ALL_CHECKS: readonly Check[] = [
  envelopeSchemas,
  ...coreHttpChecks,
  ...coreNatsChecks,
  ...coreGrpcChecks,
  ...streamingHttpChecks,
  ...streamingGrpcChecks,
  ...eventedHttpChecks,
  ...eventedGrpcChecks,
  ...eventedNatsChecks,
  ...fullHttpChecks,
  ...answerChecks,
];
