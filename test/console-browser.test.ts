// The live console in a real headless browser (Debian's chromium driven by playwright-core): it loads without console
// errors, shows the demo capability, a new actor while a slow invocation runs and its final state after, a paused
// subscription's lag as it grows, and refuses a caller without the admin scope in jwt mode.
import { existsSync } from "node:fs";
import { connect, createInbox, type NatsConnection } from "@nats-io/transport-node";
import { SignJWT } from "jose";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsEventsBinding, startNatsEvents } from "../bindings/nats/events.ts";
import { Authenticator } from "../runtime/policy/auth.ts";
import { anonymousPrincipal } from "../runtime/protocol/principal.ts";
import { demoFixtures } from "../runtime/provider/demo-provider.ts";
import { natsRequest } from "./helpers/nats.ts";
import { startTestRuntime, type TestRuntime } from "./helpers/runtime.ts";

/** Debian's chromium (Playwright's own browser download cannot be fetched here); CHROMIUM_BIN names another. */
const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
/** How long the page may take to show what the runtime holds: the feed pushes a snapshot a second. */
const SHOWN_WITHIN_MS = 15_000;

function chromiumPath(): string {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `no Chromium at ${CHROMIUM}: run \`npm test\` as root (its pretest installs Debian's chromium with apt-get), ` +
        "or run `sudo apt-get install -y chromium`, or set CHROMIUM_BIN to a Chromium binary",
    );
  }
  return CHROMIUM;
}

let browser: Browser;
beforeAll(async () => {
  // Chromium's sandbox cannot start as root (CI runs as root here).
  const asRoot = typeof process.getuid === "function" && process.getuid() === 0;
  browser = await chromium.launch({ executablePath: chromiumPath(), args: asRoot ? ["--no-sandbox"] : [] });
});
afterAll(async () => {
  await browser?.close();
});

/** A page of a fresh context whose console errors and uncaught exceptions are collected. */
async function openPage(): Promise<{ context: BrowserContext; page: Page; problems: string[] }> {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems: string[] = [];
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console: ${message.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  return { context, page, problems };
}

/** Waits until the text of `selector` is `text`. */
async function waitForText(page: Page, selector: string, text: string): Promise<void> {
  await page.waitForFunction(
    ([sel, want]) => document.querySelector(sel!)?.textContent?.trim() === want,
    [selector, text] as const,
    { timeout: SHOWN_WITHIN_MS },
  );
}

/** The sum of the numbers in the cells `selector` finds (0 when there are none). */
function sumOf(page: Page, selector: string): Promise<number> {
  return page.$$eval(selector, (cells) => cells.reduce((sum, cell) => sum + Number(cell.textContent), 0));
}

describe("the console page in auth mode none", () => {
  let t: TestRuntime;
  let natsEvents: NatsEventsBinding;
  let nc: NatsConnection;
  let opened: Awaited<ReturnType<typeof openPage>>;
  beforeAll(async () => {
    t = await startTestRuntime({ capabilities: demoFixtures(), config: { capacity: 4096 } });
    natsEvents = startNatsEvents(t.runtime, new Authenticator("none"));
    nc = await connect({ servers: t.runtime.natsUrl });
    opened = await openPage();
    await opened.page.goto(`${t.http.url}/console`);
  });
  afterAll(async () => {
    await opened?.context.close();
    await nc?.close();
    await natsEvents?.close();
    await t?.stop();
  });

  it("loads and shows the demo capability, served by this process", async () => {
    const { page } = opened;
    const row = 'tr[data-capability="observatory.models.infer"]';
    await page.locator(`#capabilities ${row}`).waitFor({ timeout: SHOWN_WITHIN_MS });
    await waitForText(page, `#capabilities ${row} .health`, "ok");
    expect(await page.locator(`#capabilities ${row} .provider`).textContent()).toBe("this process");
    expect(await page.locator("#status").getAttribute("data-status")).toBe("live");
    expect(await page.locator("#problem").isHidden()).toBe(true);
  });

  it("shows a new actor while a slow invocation runs, and its final state after", async () => {
    const { page } = opened;
    const call = t.post("/mig/v0.1/invoke/mig.fixture.slow", {
      header: { tenant_id: "acme" },
      payload: { delay_ms: 3000, tag: "browser" },
    });
    // While it runs: one live invocation actor, in the tallies and among the longest-lived.
    await page.waitForFunction(
      () =>
        [...document.querySelectorAll('#actor-states tr[data-kind="invocation"] td.live')].some(
          (cell) => cell.textContent === "1",
        ) && document.querySelector('#oldest tr[data-kind="invocation"]') !== null,
      undefined,
      { timeout: SHOWN_WITHIN_MS },
    );
    await waitForText(page, '#capabilities tr[data-capability="mig.fixture.slow"] td.in-flight', "1");

    expect((await call).status).toBe(200);
    // After: no invocation live, and its final state among the recently finished.
    await waitForText(page, '#finished tr[data-kind="invocation"][data-state="completed"] td.count', "1");
    await page.waitForFunction(() => document.querySelector('#oldest tr[data-kind="invocation"]') === null, undefined, {
      timeout: SHOWN_WITHIN_MS,
    });
    expect(await sumOf(page, '#actor-states tr[data-kind="invocation"] td.live')).toBe(0);
  });

  it("shows a subscription's lag grow while it is paused", async () => {
    const { page } = opened;
    const topic = "browser.lag";
    const inbox = createInbox();
    const deliveries = nc.subscribe(inbox, { callback: () => undefined });
    await nc.flush();
    // max_inflight 1 and no ack: the subscriber takes one event and grants no more credit.
    const answer = await natsRequest(nc, `mig.v0_1.acme.subscribe.${topic}`, {
      header: { tenant_id: "acme" },
      deliver_subject: inbox,
      max_inflight: 1,
    });
    expect(answer.body.error).toBeUndefined();
    const row = `#subscriptions tr[data-subscription="${answer.body.subscription_id}"]`;
    const publish = async (count: number) => {
      for (let i = 0; i < count; i++) {
        const ack = await t.post(`/mig/v0.1/publish/${topic}`, { header: { tenant_id: "acme" }, payload: { i } });
        expect(ack.status).toBe(200);
      }
    };
    await publish(3);
    await waitForText(page, `${row} td.lag`, "2");
    await waitForText(page, `${row} td.state`, "paused");
    await publish(4);
    await waitForText(page, `${row} td.lag`, "6");
    await natsRequest(nc, `mig.v0_1.acme.subscription.${answer.body.subscription_id}.close`, {});
    deliveries.unsubscribe();
    await page.locator(row).waitFor({ state: "detached", timeout: SHOWN_WITHIN_MS });
  });

  it("shows two thousand live actors in a few rows", async () => {
    const { page } = opened;
    const LIVE = 2000;
    const context = { principal: anonymousPrincipal(), tenant: "acme", binding: "http" as const };
    const calls = Array.from({ length: LIVE }, () =>
      t.runtime.invoke({ header: { tenant_id: "acme" }, payload: { delay_ms: 5000 } }, context, "mig.fixture.slow"),
    );
    await page.waitForFunction(
      (live) =>
        [...document.querySelectorAll('#actor-states tr[data-kind="invocation"] td.live')].reduce(
          (sum, cell) => sum + Number(cell.textContent),
          0,
        ) === live,
      LIVE,
      { timeout: SHOWN_WITHIN_MS },
    );
    const rows = await page.$$eval("#actor-states tr, #finished tr, #oldest tr", (found) => found.length);
    expect(rows).toBeLessThan(30);
    expect(await page.locator("#oldest tr").count()).toBe(10);
    await Promise.all(calls);
    await waitForText(page, '#capabilities tr[data-capability="mig.fixture.slow"] td.in-flight', "0");
  });

  it("logged no console error and threw no exception all along", () => {
    expect(opened.problems).toEqual([]);
  });
});

describe("the console page in auth mode jwt", () => {
  const SECRET = "a-console-browser-secret-long-enough-for-hs256";
  let t: TestRuntime;
  let opened: Awaited<ReturnType<typeof openPage>>;
  const token = (claims: Record<string, unknown>) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: "HS256" })
      .setIssuedAt()
      .setExpirationTime("10 minutes")
      .sign(new TextEncoder().encode(SECRET));

  beforeAll(async () => {
    t = await startTestRuntime({ config: { authMode: "jwt", jwtHs256Secret: SECRET } });
    opened = await openPage();
  });
  afterAll(async () => {
    await opened?.context.close();
    await t?.stop();
  });

  it("refuses a caller without the admin scope and shows the MIG error, no data; an admin's token shows the data", async () => {
    const { page, problems } = opened;
    await page.goto(`${t.http.url}/console`);
    await page.locator("#problem").waitFor({ timeout: SHOWN_WITHIN_MS });
    expect(await page.locator("#problem").textContent()).toContain("MIG_UNAUTHORIZED");
    expect(await page.locator("#data").isHidden()).toBe(true);

    await page.fill("#token", await token({ sub: "alice", tenant_id: "acme", scope: "capability:infer" }));
    await page.click('#auth button[type="submit"]');
    await page.waitForFunction(() => document.querySelector("#problem")?.textContent?.includes("MIG_FORBIDDEN"), {
      timeout: SHOWN_WITHIN_MS,
    });
    const refusal = await page.locator("#problem").textContent();
    expect(refusal).toContain(t.runtime.config.adminScope);
    expect(await page.locator("#data").isHidden()).toBe(true);
    expect(await page.locator("#capabilities tr").count()).toBe(0);
    expect(await page.locator("#status").getAttribute("data-status")).toBe("refused");

    await page.fill("#token", await token({ sub: "ops", tenant_id: "acme", scope: t.runtime.config.adminGlobalScope }));
    await page.click('#auth button[type="submit"]');
    await page
      .locator('#capabilities tr[data-capability="observatory.models.infer"]')
      .waitFor({ timeout: SHOWN_WITHIN_MS });
    expect(await page.locator("#problem").isHidden()).toBe(true);

    // The only errors the page saw are the browser's own lines for the two refused requests, and no exception.
    for (const problem of problems) {
      expect(problem).toMatch(/^console: Failed to load resource: the server responded with a status of 40[13]/);
    }
    expect(problems).toHaveLength(2);
  });
});
