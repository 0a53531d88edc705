// The public subjects of the NATS binding: what each runtime subscribes to, and how a subject is parsed.
import { MigError } from "../../schemas/errors.ts";
import { checkDottedName, checkMessageId, checkTenant } from "./names.ts";

export const SUBJECT_ROOT = "mig.v0_1";
/** Every runtime process serves the public subjects in this queue group: a fleet answers each request once. */
export const QUEUE_GROUP = "mig-runtime";

export type NatsOperation = "hello" | "discover" | "invoke" | "cancel" | "heartbeat";

/** The subscriptions of one runtime; `*` is the tenant token, checked per message. */
export const PUBLIC_SUBJECTS: readonly string[] = [
  `${SUBJECT_ROOT}.*.hello`,
  `${SUBJECT_ROOT}.*.discover`,
  `${SUBJECT_ROOT}.*.invoke.>`,
  `${SUBJECT_ROOT}.*.control.cancel.*`,
  `${SUBJECT_ROOT}.*.control.heartbeat`,
];

/** Request/reply: an InvokeRequest (optionally with `stream_id`) starts a stream; the reply names its subjects. */
export const STREAM_START_SUBJECT = `${SUBJECT_ROOT}.*.control.stream`;
export const streamSubject = (tenant: string, streamId: string) => `${SUBJECT_ROOT}.${tenant}.stream.${streamId}`;
/** The caller's side of a stream: credit, cancel and bidi request frames (StreamFrame JSON). */
export const streamInboundSubject = (tenant: string, streamId: string) => `${streamSubject(tenant, streamId)}.in`;

export interface ParsedSubject {
  tenant: string;
  operation: NatsOperation;
  /** The capability of an invoke subject, the target message id of a cancel subject. */
  param: string | undefined;
}

/**
 * Parses a subject that matched one of PUBLIC_SUBJECTS. A publisher can still put a wildcard, an empty
 * or an over-long token into it (the server matches `*` against any token): each is refused here,
 * with a sentence that names the token, before it reaches the runtime.
 */
export function parseSubject(subject: string): ParsedSubject {
  const tokens = subject.split(".");
  const tenant = tokens[2] ?? "";
  checkTenant(tenant, `the tenant token of subject "${clip(subject)}"`);
  const rest = tokens.slice(3);
  const head = rest[0];
  if (head === "hello" && rest.length === 1) return { tenant, operation: "hello", param: undefined };
  if (head === "discover" && rest.length === 1) return { tenant, operation: "discover", param: undefined };
  if (head === "invoke" && rest.length > 1) {
    const capability = rest.slice(1).join(".");
    checkDottedName(capability, `the capability in subject "${clip(subject)}"`);
    return { tenant, operation: "invoke", param: capability };
  }
  if (head === "control" && rest[1] === "heartbeat" && rest.length === 2)
    return { tenant, operation: "heartbeat", param: undefined };
  if (head === "control" && rest[1] === "cancel" && rest.length === 3) {
    return {
      tenant,
      operation: "cancel",
      param: checkMessageId(rest[2]!, `the message id in subject "${clip(subject)}"`),
    };
  }
  throw new MigError("MIG_NOT_FOUND", `no MIG operation on subject "${clip(subject)}"; see docs/bindings/nats.md`);
}

/**
 * The capability of `mig.v0_1.<tenant>.invoke.<capability>`, cheaply, for deciding who answers it; the
 * handler still checks the whole subject with parseSubject.
 */
export function capabilityOf(subject: string): string {
  const at = subject.indexOf(".invoke.", SUBJECT_ROOT.length + 1);
  return at < 0 ? "" : subject.slice(at + ".invoke.".length);
}

function clip(subject: string): string {
  return subject.length > 160 ? `${subject.slice(0, 157)}...` : subject;
}
