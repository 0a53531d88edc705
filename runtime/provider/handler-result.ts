// Hands a provider handler's result, returned or promised, to exactly one of two callbacks.

/**
 * Calls `handler` and passes what it returns (awaited when it is a promise) to `done`, or what it throws or
 * rejects with to `failed`. A throw from `done` itself counts as the handler's failure, as it would inside one
 * try block. No promise is made for a handler that returns synchronously.
 */
export function settleHandler(
  handler: () => unknown,
  done: (value: unknown) => void,
  failed: (err: unknown) => void,
): void {
  try {
    const result = handler();
    if (result !== null && typeof result === "object" && typeof (result as Promise<unknown>).then === "function") {
      (result as Promise<unknown>).then(done, failed);
    } else {
      done(result);
    }
  } catch (err) {
    failed(err);
  }
}
