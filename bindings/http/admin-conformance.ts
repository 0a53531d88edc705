// GET /admin/v0.1/health/conformance: the last conformance self-check of this runtime; `?run=true` runs one now.
import type { IncomingMessage, ServerResponse } from "node:http";
import { MigError } from "../../schemas/errors.ts";
import { sendJson } from "./respond.ts";
import type { SelfCheckState } from "./self-check.ts";

/**
 * Without `run` (or `run=false`): the last result, `status: "not_run"` before the first. With `run=true`: runs the Core
 * profile and answers when it has finished; while a run is under way it answers 202 with `status: "running"` and
 * starts no second run.
 */
export async function serveSelfCheck(req: IncomingMessage, res: ServerResponse, state: SelfCheckState): Promise<void> {
  if (!state.available) {
    throw new MigError(
      "MIG_NOT_FOUND",
      "this runtime has no conformance self-check: it is wired by `mig start`; run `mig conformance <url>` against it instead",
    );
  }
  const run = new URL(req.url ?? "/", "http://x").searchParams.get("run");
  if (run !== null && run !== "true" && run !== "false") {
    throw new MigError("MIG_INVALID_REQUEST", `run must be true or false, got "${run.slice(0, 40)}"`);
  }
  if (run === "true") {
    const { started, done } = state.start();
    if (!started) {
      sendJson(res, 202, state.answer());
      return;
    }
    await done;
  }
  sendJson(res, 200, state.answer());
}
