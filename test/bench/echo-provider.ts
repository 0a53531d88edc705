// Benchmark provider module for `mig worker`: bench.echo, a best_effort capability that answers its payload.
import { defineCapability } from "../../runtime/provider/provider.ts";

export const benchEcho = defineCapability(
  {
    id: "bench.echo",
    version: "1.0.0",
    modes: ["unary"],
    input_schema_uri: "schema://bench/echo/v1",
    output_schema_uri: "schema://bench/echo/v1",
    auth_scopes: [],
    qos: { delivery_semantics: "best_effort" },
  },
  (payload) => ({ result: "ok", echo: payload }),
  { "schema://bench/echo/v1": { type: "object" } },
);

export default [benchEcho];
