// The fleet's schema bodies, durable: a JetStream KV bucket keyed by schema URI, written once per URI (create, never
// update), and watched by every runtime so that each one validates with the same bodies, across restarts too.
import type { KV, KvWatchEntry } from "@nats-io/kv";
import type { QueuedIterator } from "@nats-io/transport-node";
import type { JsonObject } from "../../schemas/types.ts";
import type { Logger } from "../base/logger.ts";
import type { Bus } from "../bus/bus.ts";
import { openBucket } from "../bus/replicas.ts";

export const SCHEMA_BUCKET = "mig_schemas";
/** The largest schema body kept, in JSON bytes: the size bound of a provider's whole registration record. */
export const MAX_SCHEMA_BYTES = 1024 * 1024;
/** Longest schema URI. */
export const MAX_SCHEMA_URI_LENGTH = 1024;

interface StoredSchema {
  uri: string;
  schema: JsonObject;
}

/** A KV key for a URI: URIs hold characters keys may not (`:`), so the key is the URI in base64url. */
export function schemaKey(uri: string): string {
  return Buffer.from(uri, "utf8").toString("base64url");
}

export class SchemaStore {
  private watcher: QueuedIterator<KvWatchEntry> | undefined;
  private stopped = false;

  private constructor(
    private readonly kv: KV,
    private readonly logger: Logger,
  ) {}

  /**
   * Opens the bucket (with `replicas` copies, MIG_JS_REPLICAS) and hands every stored body to `stored`: those already
   * there before this resolves, then each one another runtime writes, as it comes.
   */
  static async open(
    bus: Bus,
    replicas: number,
    logger: Logger,
    stored: (uri: string, schema: JsonObject) => void,
  ): Promise<SchemaStore> {
    const kv = await openBucket(bus.kvm, bus.jsm, SCHEMA_BUCKET, replicas, {
      history: 1,
      // The body and its URI, in the JSON wrapper.
      maxValueSize: MAX_SCHEMA_BYTES + MAX_SCHEMA_URI_LENGTH * 2 + 64,
    });
    const store = new SchemaStore(kv, logger);
    await store.watch(stored);
    return store;
  }

  /** Resolves once the bodies stored before the call have been handed over; later ones follow as they come. */
  private async watch(stored: (uri: string, schema: JsonObject) => void): Promise<void> {
    const status = await this.kv.status();
    const watcher = await this.kv.watch({ ignoreDeletes: true });
    this.watcher = watcher;
    let caughtUp: () => void = () => undefined;
    const initial = new Promise<void>((resolve) => (caughtUp = resolve));
    if (status.values === 0) caughtUp();
    void (async () => {
      for await (const entry of watcher) {
        const value = readStored(entry);
        if (value) stored(value.uri, value.schema);
        else this.logger.warn({ key: entry.key }, "schema store entry is not a schema record; ignored");
        // The last entry of the replay is the first one marked as an update.
        if (entry.isUpdate) caughtUp();
      }
    })().catch((err: unknown) => {
      if (!this.stopped) this.logger.error({ err: (err as Error).message }, "schema store watch ended");
    });
    await initial;
  }

  /**
   * Stores `schema` under `uri` unless a body is there already: resolves undefined when this call stored it, or the
   * body stored first (equal to this one or not: the caller compares).
   */
  async create(uri: string, schema: JsonObject): Promise<JsonObject | undefined> {
    const key = schemaKey(uri);
    const record: StoredSchema = { uri, schema };
    try {
      await this.kv.create(key, JSON.stringify(record));
      return undefined;
    } catch (err) {
      if (!/wrong last sequence|key exists/i.test((err as Error).message)) throw err;
    }
    const entry = await this.kv.get(key);
    const value = entry ? readStored(entry) : undefined;
    if (!value) throw new Error(`the schema store holds no readable record for ${uri}`);
    return value.schema;
  }

  stop(): void {
    this.stopped = true;
    this.watcher?.stop();
  }
}

function readStored(entry: { operation: string; string(): string }): StoredSchema | undefined {
  if (entry.operation !== "PUT") return undefined;
  try {
    const value = JSON.parse(entry.string()) as Partial<StoredSchema>;
    if (typeof value.uri !== "string" || value.schema === null || typeof value.schema !== "object") return undefined;
    return value as StoredSchema;
  } catch {
    return undefined;
  }
}
