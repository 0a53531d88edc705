// Events benchmark: PUBLISH through the NATS binding against raw `jetstream.publish` with the same client,
// and replay of 100,000 events over SSE against a raw JetStream consumer, in one run against one `mig start` process.
// Rounds alternate the two sides (raw, MIG, MIG, raw, …) and the ratio is the median over the pairs of neighbouring
// rounds (paired.ts), as the loader rows measure theirs; the ratio of each side's best round is printed beside it.
// Each figure comes with the CPU time per event of the runtime, its nats-server and this client process (/proc,
// Linux; median over the rounds), the steadier figure on a shared machine. Both replay readers decode every
// event's JSON.
//   node --import tsx test/bench/events.ts [--events 100000] [--publishes 20000] [--window 256] [--rounds 3]
//     [--windows 1,64]  publish at each of these numbers of calls in flight instead of --window
//     [--only publish|replay]  measure one of the two
//     [--json]  print the figures as one JSON line instead of the text rows (the bench table reads it)
import { request } from "node:http";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type Msg } from "@nats-io/transport-node";
import { startMig } from "../helpers/process.ts";
import { cpuPerUnit, medianPerKey, natsServerPid } from "./cpu.ts";
import { alternate, median, pairedMedianRatio } from "./paired.ts";

const args = process.argv.slice(2);
const option = (name: string, fallback: number) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? fallback : Number(args[i + 1]);
};
const EVENTS = option("events", 100_000);
const PUBLISHES = option("publishes", 20_000);
const WINDOW = option("window", 256);
const ROUNDS = option("rounds", 3);
const textOption = (name: string) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? undefined : args[i + 1];
};
const WINDOWS = (textOption("windows") ?? String(WINDOW)).split(",").map(Number);
const ONLY = textOption("only");
const JSON_OUT = args.includes("--json");
if (WINDOWS.some((w) => !Number.isInteger(w) || w < 1))
  throw new Error("--windows: positive integers, comma-separated");
if (ONLY !== undefined && ONLY !== "publish" && ONLY !== "replay") throw new Error("--only: publish or replay");

/** Runs `count` calls of `one`, at most `window` in flight; returns calls per second. */
async function pipelined(count: number, window: number, one: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: window }, async () => {
      while (next < count) await one(next++);
    }),
  );
  return count / ((performance.now() - started) / 1000);
}

/** A PUBLISH by NATS request that the runtime refused: an error reply, which must not count as a publish. */
async function acked(reply: Promise<Msg>): Promise<void> {
  const msg = await reply;
  const code = msg.headers?.get("mig_error_code");
  if (code) throw new Error(`PUBLISH answered ${code}: ${msg.string().slice(0, 200)}`);
}

/**
 * Reads an SSE subscription until `count` events arrived, parsing each `data:` line as JSON (as the raw consumer
 * decodes each message); returns events per second (from the request).
 */
function sseRate(url: string, count: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    let seen = 0;
    let tail = "";
    const req = request(url, { headers: { "x-tenant-id": "bench" } }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`subscribe answered ${res.statusCode}`));
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        const text = tail + chunk;
        let at = 0;
        for (;;) {
          const data = text.indexOf("\ndata: ", at);
          const end = data === -1 ? -1 : text.indexOf("\n", data + 7);
          if (end === -1) break;
          const event = JSON.parse(text.slice(data + 7, end)) as { sequence?: unknown };
          if (typeof event.sequence === "number") seen++;
          at = end;
        }
        tail = text.slice(at);
        if (seen >= count) {
          resolve(count / ((performance.now() - started) / 1000));
          req.destroy();
        }
      });
    });
    req.on("error", (err) => (seen >= count ? undefined : reject(err)));
    req.end();
  });
}

type Cpu = Record<string, number>;
/** One round of one side: its rate, and the CPU µs per unit of each process during it. */
interface Round {
  result: number;
  cpu: Cpu;
}

/** A side's figures over its rounds: median rate, best rate, median CPU per unit of each process. */
function summary(rounds: Round[]): { median: number; best: number; cpu: Cpu } {
  const rates = rounds.map((r) => r.result);
  return {
    median: Math.round(median(rates)),
    best: Math.round(Math.max(...rates)),
    cpu: medianPerKey(rounds.map((r) => r.cpu)).cpu_us_per_call ?? {},
  };
}

/** The two sides compared (raw as `a`, MIG as `b`): the paired median ratio (the verdict) and, beside it, best round against best round. */
function compare({ a: rawRounds, b: migRounds }: { a: Round[]; b: Round[] }) {
  const mig = summary(migRounds);
  const raw = summary(rawRounds);
  return {
    mig_median: mig.median,
    raw_median: raw.median,
    ratio:
      pairedMedianRatio(
        migRounds.map((r) => r.result),
        rawRounds.map((r) => r.result),
      ) ?? 0,
    best_round_ratio: Math.round((mig.best / raw.best) * 1000) / 1000,
    rounds: migRounds.length,
    /** Each round's rate, in the order run: any other estimate can be worked out from these. */
    rates: { mig: migRounds.map((r) => Math.round(r.result)), raw: rawRounds.map((r) => Math.round(r.result)) },
    cpu_us: mig.cpu,
    raw_cpu_us: raw.cpu,
  };
}
/** What the JSON line reports of a comparison, beside each measurement's own rates. */
type Compared = Omit<ReturnType<typeof compare>, "mig_median" | "raw_median">;

async function main(): Promise<void> {
  // The rows measure the PUBLISH and replay paths, not the quotas that bound one tenant: lifted here, as an
  // operator does for a tenant that needs the rate (docs/security.md, Limits).
  const mig = startMig(["start"], {
    MIG_REPLAY_RATE_PER_SEC: "0",
    MIG_REPLAY_MAX_EVENTS: String(EVENTS),
    MIG_TENANT_PUBLISH_RATE_LIMIT: "off",
    MIG_TOPIC_MAX_BYTES: String(1024 * 1024 * 1024),
    MIG_LOG_LEVEL: "info",
  });
  try {
    const bus = await mig.waitForLog("embedded nats-server listening", 30_000);
    const http = await mig.waitForLog("HTTP binding listening", 30_000);
    await mig.waitForLog("NATS events binding listening", 30_000);
    const nc = await connect({ servers: String(bus.url) });
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    const body = (i: number) =>
      JSON.stringify({ header: { tenant_id: "bench" }, payload: { i, text: "an event of a typical small size" } });

    const pids = { runtime: mig.child.pid, nats_server: natsServerPid(mig.dataDir) };

    // PUBLISH: raw JetStream publish into a stream of the same settings, then the NATS binding, same client.
    const publish: (Compared & { window: number; mig_rps: number; raw_jetstream_rps: number })[] = [];
    if (ONLY !== "replay") {
      await jsm.streams.add({ name: "RAW_BENCH", subjects: ["raw.bench"], duplicate_window: 10 * 60 * 1e9 });
      await pipelined(2_000, WINDOW, (i) => js.publish("raw.bench", body(i)));
      await pipelined(2_000, WINDOW, (i) =>
        acked(nc.request("mig.v0_1.bench.events.bench.warmup", body(i), { timeout: 10_000 })),
      );
      for (const window of WINDOWS) {
        let rawRound = 0;
        const sides = await alternate(
          ROUNDS,
          () => {
            const round = rawRound++;
            return cpuPerUnit(pids, PUBLISHES, () =>
              pipelined(PUBLISHES, window, (i) =>
                js.publish("raw.bench", body(i), { msgID: `raw-${window}-${round}-${i}` }),
              ),
            );
          },
          () =>
            cpuPerUnit(pids, PUBLISHES, () =>
              pipelined(PUBLISHES, window, (i) =>
                acked(nc.request("mig.v0_1.bench.events.bench.publish", body(i), { timeout: 10_000 })),
              ),
            ),
        );
        const { mig_median, raw_median, ...figures } = compare(sides);
        publish.push({ window, mig_rps: mig_median, raw_jetstream_rps: raw_median, ...figures });
      }
    }

    let replay: (Compared & { events: number; mig_eps: number; raw_consumer_eps: number }) | undefined;
    if (ONLY !== "publish") {
      // REPLAY: fill one topic with EVENTS events, then read them all with a raw consumer and with an SSE subscription.
      await pipelined(EVENTS, WINDOW, (i) =>
        acked(nc.request("mig.v0_1.bench.events.bench.replay", body(i), { timeout: 10_000 })),
      );
      const streams = await jsm.streams.list("_MIG.ev.bench.bench.replay").next();
      const stream = streams[0]!.config.name;
      let rawRound = 0;
      const rawConsumer = async (): Promise<Round> => {
        const durable = `raw${rawRound++}`;
        await jsm.consumers.add(stream, {
          durable_name: durable,
          ack_policy: AckPolicy.Explicit,
          deliver_policy: DeliverPolicy.All,
          max_ack_pending: 10_000,
        });
        const consumer = await js.consumers.get(stream, durable);
        return cpuPerUnit(
          pids,
          EVENTS,
          () =>
            new Promise<number>((resolve) => {
              const started = performance.now();
              let n = 0;
              const reading = consumer.consume({
                max_messages: 1_000,
                callback: (m) => {
                  // Decoded as the SSE reader parses each event.
                  if (typeof m.json<{ payload?: unknown }>().payload === "object") n++;
                  m.ack();
                  if (n === EVENTS) {
                    resolve(EVENTS / ((performance.now() - started) / 1000));
                    void reading.then((messages) => messages.stop());
                  }
                },
              });
            }),
        );
      };
      const url = `${String(http.url)}/mig/v0.1/subscribe/bench.replay?resume_cursor=0&max_inflight=10000`;
      const sides = await alternate(ROUNDS, rawConsumer, () => cpuPerUnit(pids, EVENTS, () => sseRate(url, EVENTS)));
      const { mig_median, raw_median, ...figures } = compare(sides);
      replay = { events: EVENTS, mig_eps: mig_median, raw_consumer_eps: raw_median, ...figures };
    }

    if (JSON_OUT) {
      process.stdout.write(`${JSON.stringify({ publish, ...(replay ? { replay } : {}) })}\n`);
    } else {
      const row = (
        name: string,
        p: { ratio: number; best_round_ratio: number; rounds: number },
        mig: number,
        base: number,
      ) =>
        `${name.padEnd(44)} ${mig.toString().padStart(9)}/s   raw ${base.toString().padStart(9)}/s   ratio ${p.ratio.toFixed(2)} ` +
        `(median of ${p.rounds} paired rounds; best round against best round ${p.best_round_ratio.toFixed(2)})`;
      const cpu = (c: Cpu) =>
        Object.entries(c)
          .map(([k, v]) => `${k} ${v}`)
          .join(", ");
      const cpuRows = (mig: Cpu, raw: Cpu) => `${"".padEnd(44)} CPU µs/event: MIG ${cpu(mig)}; raw ${cpu(raw)}`;
      for (const p of publish) {
        console.log(row(`publish via NATS binding (window ${p.window})`, p, p.mig_rps, p.raw_jetstream_rps));
        console.log(cpuRows(p.cpu_us, p.raw_cpu_us));
      }
      if (replay) {
        console.log(row(`replay ${EVENTS} events over SSE`, replay, replay.mig_eps, replay.raw_consumer_eps));
        console.log(cpuRows(replay.cpu_us, replay.raw_cpu_us));
      }
    }
    await nc.close();
  } finally {
    await mig.stop();
  }
}

await main();
