// A server's open streaming calls, in a file of their own so the stream handlers register theirs without importing server.ts.

/** The open streaming calls of a server, each as a function that ends it with a reason (at shutdown). */
export type StreamingCalls = Set<(reason: string) => void>;
