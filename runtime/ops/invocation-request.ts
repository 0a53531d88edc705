// The one path every INVOKE takes before it runs, unary or streaming: header and tenant, the capability named,
// the caller authorized for it, its mode, its payload. Written once, so a rule holds the same on both paths and on
// every binding.

import { MigError } from "../../schemas/errors.ts";
import type { JsonObject, MessageHeader } from "../../schemas/types.ts";
import type { RuntimeCore } from "../core.ts";
import { checkDottedName } from "../protocol/names.ts";
import type { RequestContext } from "../protocol/request-context.ts";
import { DEPRECATION_META_KEY, deprecationMeta } from "../provider/lifecycle.ts";
import type { RegisteredCapability } from "../provider/registry.ts";
import { replacementOf } from "../provider/version-choice.ts";
import { pinOf, VERSION_META_KEY } from "../provider/versions.ts";
import { acceptRequest, agreeing, optionalStringField, requireObject } from "./request.ts";

/** An INVOKE that passed every check: what running it (or opening its stream) needs. */
export interface AcceptedInvocation<Mode> {
  header: MessageHeader;
  entry: RegisteredCapability;
  mode: Mode;
  payload: JsonObject;
}

/**
 * Checks an InvokeRequest-shaped body, in this order: header and tenant (acceptRequest), the capability it names
 * (in the body or, `where` the binding puts it, `capability`), the caller's right to it (the policy: scopes,
 * tenant allow lists, rate limits; skipped when `authorized`, for a worker taking what a gateway authorized), the
 * mode (`chooseMode` throws for one the path cannot serve), and the payload (size bound, input schema). Throws the
 * MigError to answer.
 */
export function acceptInvocation<Mode>(
  core: RuntimeCore,
  body: unknown,
  request: RequestContext,
  options: {
    capability: string | undefined;
    where: string;
    authorized?: boolean | undefined;
    /** The exact version to run (a worker taking what a gateway chose), instead of the header's pin. */
    version?: string | undefined;
    chooseMode: (raw: JsonObject, entry: RegisteredCapability, header: MessageHeader) => Mode;
  },
): AcceptedInvocation<Mode> {
  const { raw, header } = acceptRequest(core, body, request);
  const entry = namedCapability(core, raw, header, options);
  if (!options.authorized) core.policy.authorizeInvoke(request, header.tenant_id, entry.descriptor);
  const mode = options.chooseMode(raw, entry, header);
  const payload = acceptedPayload(core, raw, entry, request.bodyBytes);
  return { header, entry, mode, payload };
}

/**
 * The capability the request names (in the body, or where the binding puts it, e.g. the HTTP path), served here, in
 * the version the header's meta pins (`mig.capability_version`: an exact version or a range) or, without a pin, the
 * default one (runtime/provider/version-choice.ts). The answer's header says which version served a pinned call, and
 * that a version is deprecated. `where` tells the caller where else it may name the capability.
 */
function namedCapability(
  core: RuntimeCore,
  raw: JsonObject,
  header: MessageHeader,
  options: { capability: string | undefined; where: string; version?: string | undefined },
): RegisteredCapability {
  const id = agreeing(options.capability, optionalStringField(raw, "capability", 200), "capability");
  if (id === undefined)
    throw new MigError("MIG_INVALID_REQUEST", `capability is required: name it in ${options.where}`);
  checkDottedName(id, "capability");
  const pin = options.version !== undefined ? pinOf({ [VERSION_META_KEY]: options.version }) : pinOf(header.meta);
  const entry = core.capabilities.resolve(id, pin);
  if (!entry) {
    throw new MigError(
      "MIG_UNSUPPORTED_CAPABILITY",
      `capability ${id} is not served here; DISCOVER lists the capabilities you can invoke`,
    );
  }
  const { version } = entry.descriptor;
  if (pin !== undefined && header.meta?.[VERSION_META_KEY] !== undefined)
    header.meta = { ...header.meta, [VERSION_META_KEY]: version };
  if (entry.lifecycle !== undefined) {
    const replacement = replacementOf(core.capabilities.versions(id));
    header.meta = {
      ...header.meta,
      [DEPRECATION_META_KEY]: deprecationMeta(
        version,
        entry.lifecycle,
        replacement === version ? undefined : replacement,
      ),
    };
  }
  if (entry.labels) {
    const counted = core.metrics.versionCallsCounted;
    counted.set(entry.labels, (counted.get(entry.labels) ?? 0) + 1);
  }
  return entry;
}

/** The request's payload, checked against the capability's size bound and input schema. */
function acceptedPayload(
  core: RuntimeCore,
  raw: JsonObject,
  entry: RegisteredCapability,
  bodyBytes: number | undefined,
): JsonObject {
  if (raw.payload === undefined)
    throw new MigError("MIG_INVALID_REQUEST", "payload is required: send a JSON object, e.g. {}");
  const payload = requireObject(raw.payload, "payload");
  checkPayloadSize(payload, entry, bodyBytes);
  const { input_schema_uri } = entry.descriptor;
  const problems = core.schemas.check(input_schema_uri, payload);
  if (problems) {
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `payload does not match the input schema ${input_schema_uri}: ${problems[0]}`,
      { details: { schema_uri: input_schema_uri, errors: problems } },
    );
  }
  return payload;
}

function checkPayloadSize(payload: JsonObject, entry: RegisteredCapability, bodyBytes: number | undefined): void {
  const max = entry.descriptor.qos?.max_payload_bytes;
  // The body is an upper bound of the payload's size: measure the payload only when the body is larger.
  if (!max || (bodyBytes !== undefined && bodyBytes <= max)) return;
  const size = Buffer.byteLength(JSON.stringify(payload));
  if (size > max) {
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `payload is ${size} bytes; capability ${entry.descriptor.id} accepts at most ${max}`,
      {
        details: { payload_bytes: size, max_payload_bytes: max },
      },
    );
  }
}
