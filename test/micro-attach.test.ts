// NATS micro services attach: a @nats-io/services service with MIG metadata, no MIG code in it, served through HTTP and NATS.

import { type Service, Svcm } from "@nats-io/services";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsBinding, startNatsBinding } from "../bindings/nats/server.ts";
import { natsClient, natsRequest } from "./helpers/nats.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

let rt: TestRuntime;
let binding: NatsBinding;
let nc: NatsConnection;
let service: Service;

beforeAll(async () => {
  rt = await startTestRuntime();
  binding = await startNatsBinding(rt.runtime, rt.runtime.authenticator);
  nc = await natsClient(rt.runtime.natsUrl);
  // A plain micro service: it knows nothing of MIG beyond the metadata on its endpoint.
  // @nats-io/services 3.0.0-25 pins an older nats-core: the connection is the same object, only its types differ.
  service = await new Svcm(nc as never).add({ name: "weather", version: "2.1.0", description: "forecasts" });
  service.addEndpoint("forecast", {
    subject: "weather.forecast",
    metadata: {
      "mig.capability": "weather.forecast",
      "mig.version": "1.2.0",
      "mig.input_schema_uri": "schema://weather/forecast-in/v1",
    },
    handler: (_err, msg) => {
      const request = msg.json<{ city?: string }>();
      if (!request.city) msg.respondError(400, "city is required");
      else msg.respond(JSON.stringify({ city: request.city, sky: "clear" }));
    },
  });
  service.addEndpoint("internal", { subject: "weather.internal", handler: (_err, msg) => msg.respond("{}") });
});

afterAll(async () => {
  await service?.stop().catch(() => undefined);
  await nc?.close();
  await binding?.close();
  await rt?.stop();
});

const discovered = async () =>
  (await rt.post("/mig/v0.1/discover", { header: { tenant_id: "acme" } })).body.capabilities as {
    id: string;
    version: string;
    input_schema_uri: string;
  }[];

describe("a NATS micro service with MIG metadata", () => {
  it("is discovered, with the version and schema URI its metadata names; endpoints without metadata are not", async () => {
    const found = await waitFor("weather.forecast in DISCOVER", async () =>
      (await discovered()).find((c) => c.id === "weather.forecast"),
    );
    expect(found).toMatchObject({
      version: "1.2.0",
      input_schema_uri: "schema://weather/forecast-in/v1",
      modes: ["unary"],
    });
    expect((await discovered()).map((c) => c.id)).not.toContain("weather.internal");
  });

  it("is invoked through HTTP and through NATS", async () => {
    const http = await rt.post("/mig/v0.1/invoke/weather.forecast", {
      header: { tenant_id: "acme" },
      payload: { city: "Oslo" },
    });
    expect(http.status).toBe(200);
    expect(http.body.payload).toEqual({ city: "Oslo", sky: "clear" });
    const nats = await natsRequest(nc, "mig.v0_1.acme.invoke.weather.forecast", { payload: { city: "Lima" } });
    expect(nats.body.payload).toEqual({ city: "Lima", sky: "clear" });
  });

  it("turns the service's error into a MIG error envelope", async () => {
    const answer = await natsRequest(nc, "mig.v0_1.acme.invoke.weather.forecast", { payload: {} });
    expect(answer.body.error.code).toBe("MIG_INVALID_REQUEST");
    expect(answer.body.error.message).toContain("city is required");
  });

  it("leaves DISCOVER when the service stops", async () => {
    await service.stop();
    await waitFor(
      "weather.forecast to leave DISCOVER",
      async () => !(await discovered()).some((c) => c.id === "weather.forecast"),
      15_000,
    );
  }, 20_000);
});
