// The shape of one conformance check: an id named after its checklist item, the profile and wire it belongs to, and its body.

import type { CheckContext } from "./context.ts";
import type { Binding, Profile } from "./types.ts";

export interface Check {
  /** "<checklist item>.<binding>.<name>", e.g. "CORE-1.http.hello-negotiates". */
  id: string;
  /** Checklist item it covers, e.g. "CORE-1" (see checklist.ts). */
  item: string;
  /** Smallest profile that includes it. */
  profile: Profile;
  binding: Binding;
  /** One line: what the endpoint must do for the check to pass. */
  description: string;
  /**
   * Set when the check encodes a convention (this project's or the reference gateway's) rather than the standard:
   * why. Such a check runs and reports as any other, but does not count toward the profile's pass or fail.
   */
  convention?: string;
  /** Resolves to pass (optionally with a note), throws CheckFailure or CheckSkipped otherwise. */
  run(ctx: CheckContext): Promise<string | void>;
}

/** Declares a check; its id is derived from item, binding and name. */
export function check(
  item: string,
  binding: Binding,
  name: string,
  profile: Profile,
  description: string,
  run: Check["run"],
): Check {
  return { id: `${item}.${binding}.${name}`, item, profile, binding, description, run };
}

/** Marks a check as encoding a convention, not the standard; `why` names whose convention it is and what it assumes. */
export function convention(why: string, marked: Check): Check {
  return { ...marked, convention: why };
}
