// Binds an HTTP(S) server to a "host:port" setting and says where it ended up (port 0 picks a free one).
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { parseAddr } from "../../runtime/mod.ts";

/** Resolves with "host:port" as bound (IPv6 hosts in brackets), or rejects with the listen error. */
export async function listenOn(server: Server, addr: string): Promise<string> {
  const { host, port } = parseAddr(addr);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const bound = server.address() as AddressInfo;
  return `${bound.family === "IPv6" ? `[${bound.address}]` : bound.address}:${bound.port}`;
}
