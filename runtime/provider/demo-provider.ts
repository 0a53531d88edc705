// The demo provider: observatory.models.infer, the standard's default capability, answering like its reference.
import { defineCapability } from "./provider.ts";

export const INFER_INPUT_SCHEMA = "schema://observatory/models/infer-input/v1";
export const INFER_OUTPUT_SCHEMA = "schema://observatory/models/infer-output/v1";

export const observatoryInfer = defineCapability(
  {
    id: "observatory.models.infer",
    version: "1.0.0",
    modes: ["unary", "server_stream"],
    input_schema_uri: INFER_INPUT_SCHEMA,
    output_schema_uri: INFER_OUTPUT_SCHEMA,
    event_topics: ["observatory.inference.completed"],
    auth_scopes: ["capability:infer"],
    qos: {
      max_payload_bytes: 1024 * 1024,
      supports_replay: true,
      delivery_semantics: "at_least_once",
      supports_ordering: true,
    },
  },
  // Same answer shape as the standard's reference gateway, so clients written against it work here.
  (payload, { capability }) => ({
    result: "ok",
    echo: payload,
    capability: capability.id,
    delivery_qos: capability.qos?.delivery_semantics ?? "best_effort",
  }),
  {
    [INFER_INPUT_SCHEMA]: {
      type: "object",
      properties: { input: { type: "string" } },
      required: ["input"],
    },
    [INFER_OUTPUT_SCHEMA]: {
      type: "object",
      properties: { result: { type: "string" } },
      required: ["result"],
    },
  },
  // server_stream: one frame per whitespace-separated token of the input, then a terminal result.
  async (payload, { emit, signal }) => {
    const tokens = String(payload.input).split(/\s+/).filter(Boolean);
    for (let index = 0; index < tokens.length; index++) {
      signal.throwIfAborted();
      await emit({ token: tokens[index], index });
    }
    return { result: "ok", tokens: tokens.length };
  },
);

export default [observatoryInfer];
