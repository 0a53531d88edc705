// HELLO: deterministic version choice, binding choice and feature negotiation.

import { MigError } from "../../schemas/errors.ts";
import type { BindingType, HelloResponse } from "../../schemas/types.ts";
import type { RuntimeCore } from "../core.ts";
import { MIG_VERSION } from "../protocol/header.ts";
import type { RequestContext } from "../protocol/request-context.ts";
import { acceptRequest, optionalStringList } from "./request.ts";

/** Versions this server speaks, as [major, minor]. */
const SUPPORTED: readonly [number, number][] = [[0, 1]];
const BINDINGS: readonly BindingType[] = ["http", "nats", "grpc"];

/** Features this server offers; a HELLO that names none gets them all. */
export const SERVER_FEATURES = ["core", "deadlines", "idempotency", "cancel", "heartbeat", "metrics"] as const;

function parseVersion(text: string): [number, number] | undefined {
  const match = /^\s*(\d+)\.(\d+)(?:\.\d+)?\s*$/.exec(text);
  return match ? [Number(match[1]), Number(match[2])] : undefined;
}

/** The highest version both sides support, or a MIG_VERSION_MISMATCH that says what would work. */
export function chooseVersion(offered: string[]): string {
  if (offered.length === 0) return MIG_VERSION;
  let best: [number, number] | undefined;
  for (const text of offered) {
    const version = parseVersion(text);
    if (!version) continue;
    const supported = SUPPORTED.some(([maj, min]) => maj === version[0] && min === version[1]);
    if (supported && (!best || version[0] > best[0] || (version[0] === best[0] && version[1] > best[1])))
      best = version;
  }
  if (!best) {
    const majors = new Set(SUPPORTED.map(([maj]) => maj));
    const unknownMajor = offered.every((t) => !majors.has(parseVersion(t)?.[0] ?? -1));
    throw new MigError(
      "MIG_VERSION_MISMATCH",
      unknownMajor
        ? `none of the offered versions (${offered.join(", ")}) has a major version this server speaks; it speaks ${MIG_VERSION}`
        : `no offered version (${offered.join(", ")}) is one this server speaks; it speaks ${MIG_VERSION}`,
      { details: { supported_versions: SUPPORTED.map(([a, b]) => `${a}.${b}`), offered_versions: offered } },
    );
  }
  return `${best[0]}.${best[1]}`;
}

export function hello(core: RuntimeCore, body: unknown, request: RequestContext): HelloResponse {
  const { raw, header } = acceptRequest(core, body, request);
  const selected_version = chooseVersion(optionalStringList(raw, "supported_versions"));

  const requested = optionalStringList(raw, "requested_bindings").map((b) => b.toLowerCase());
  for (const binding of requested) {
    if (!BINDINGS.includes(binding as BindingType)) {
      throw new MigError(
        "MIG_INVALID_REQUEST",
        `requested_bindings: "${binding}" is not one of ${BINDINGS.join(", ")}`,
      );
    }
  }
  // The binding the HELLO arrived on wins when the caller accepts it; otherwise the caller's first choice.
  const selected_binding =
    requested.length === 0 || requested.includes(request.binding) ? request.binding : (requested[0] as BindingType);

  const wanted = optionalStringList(raw, "requested_features");
  const enabled_features =
    wanted.length === 0
      ? [...SERVER_FEATURES]
      : wanted.filter((f) => (SERVER_FEATURES as readonly string[]).includes(f));

  return { header, selected_version, selected_binding, enabled_features, server_id: core.serverId };
}
