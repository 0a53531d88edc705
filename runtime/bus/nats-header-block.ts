// Write-only NATS headers for messages this runtime publishes on hot paths (replies, stored and live events).
//
// nats.js's MsgHdrs canonicalizes, lists and filters every key on each set() or append(), and compiles a RegExp
// per value: per NATS invoke that was about a sixth of the bytes allocated (docs/decisions.md, 'Write-only headers
// are a `HeaderBlock`'). Headers that are only ever written need none of it. nats.js's publish reads nothing from
// its `headers` option but encode() (@nats-io/nats-core 3.x, protocol.js), so a block is the header text in NATS's
// wire format ("NATS/1.0", then one "key: value" line each) behind that one method. Messages the runtime reads
// headers from keep MsgHdrs.
import type { MsgHdrs } from "@nats-io/transport-node";

const encoder = new TextEncoder();
/** A value that would end its header line early cannot be sent as it is. */
const LINE_BREAK = /[\r\n]/;

export class HeaderBlock {
  private text = "NATS/1.0";
  /** Set by encodeInto(): the block's bytes in a buffer shared with other messages of a batch. */
  private encoded: Uint8Array | undefined;

  /**
   * Adds `key: value`. Keys are the runtime's own constants. A value with a line break is left out (callers that
   * must keep such a value encode it first); an empty one is left out as nats.js would send it empty.
   */
  add(key: string, value: string): this {
    const line = value.trim();
    if (line !== "" && !LINE_BREAK.test(line)) this.text += `\r\n${key}: ${line}`;
    return this;
  }

  encode(): Uint8Array {
    return this.encoded ?? encoder.encode(`${this.text}\r\n\r\n`);
  }

  /** The size of the encoded block in bytes. */
  get byteLength(): number {
    return Buffer.byteLength(this.text) + 4;
  }

  /** Encodes the block into `buffer` at `offset` (runtime/bus/turn-batch.ts), where encode() then finds it; returns the end. */
  encodeInto(buffer: Buffer, offset: number): number {
    const end = offset + buffer.write(`${this.text}\r\n\r\n`, offset);
    this.encoded = buffer.subarray(offset, end);
    return end;
  }

  /** For nats.js's `headers` option, whose type names the whole MsgHdrs interface although publish uses encode() only. */
  get forPublish(): MsgHdrs {
    return this as unknown as MsgHdrs;
  }
}
