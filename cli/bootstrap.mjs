// Dependency-free preflight for `npm start`, `npm test` and `npm run bench`: installs the node
// modules when they are missing or stale and makes sure a nats-server binary can be found; with
// `--browser` (the test run's), also Debian's chromium, which the console's browser test drives; with `--bench`,
// wrk, which drives the HTTP benchmark rows.
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

function say(line) {
  process.stderr.write(`[bootstrap] ${line}\n`);
}

/**
 * The modules are current when they were installed from this very lock file. A content hash is
 * compared, not modification times: a fresh checkout (or a git worktree sharing node_modules)
 * has a newer lock file without any change in it, and `npm ci` would wipe a working install.
 */
function lockHash() {
  const lock = join(root, "package-lock.json");
  return existsSync(lock) ? createHash("sha256").update(readFileSync(lock)).digest("hex") : "no-lock";
}

const HASH_FILE = join(root, "node_modules", ".mig-lock-hash");

function modulesAreCurrent() {
  if (!existsSync(join(root, "node_modules", ".package-lock.json"))) return false;
  if (!existsSync(HASH_FILE)) {
    // Installed by hand (npm install / npm ci): trust it and remember which lock file it matches.
    writeFileSync(HASH_FILE, lockHash());
    return true;
  }
  return readFileSync(HASH_FILE, "utf8") === lockHash();
}

function ensureNodeModules() {
  if (modulesAreCurrent()) return;
  const hasLock = existsSync(join(root, "package-lock.json"));
  say(`installing node modules (npm ${hasLock ? "ci" : "install"})`);
  const result = spawnSync("npm", [hasLock ? "ci" : "install", "--no-audit", "--no-fund"], {
    cwd: root,
    stdio: "inherit",
  });
  if (result.status !== 0) {
    say("npm could not install the node modules; fix the error above and run the command again.");
    process.exit(1);
  }
  writeFileSync(HASH_FILE, lockHash());
}

function findOnPath(name) {
  const result = spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" });
  return result.status === 0 ? result.stdout.trim() : "";
}

const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
let aptUpdated = false;

/** Installs Debian packages with apt-get (as root), updating the package lists once per run; false if it failed. */
function aptInstall(packages) {
  try {
    if (!aptUpdated) execFileSync("apt-get", ["update", "-qq"], { stdio: "inherit" });
    aptUpdated = true;
    execFileSync("apt-get", ["install", "-y", "-qq", ...packages], {
      stdio: "inherit",
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
    return true;
  } catch {
    return false;
  }
}

function ensureNatsServer() {
  const explicit = process.env.NATS_SERVER_BIN;
  if (explicit) {
    if (existsSync(explicit)) return;
    say(`NATS_SERVER_BIN points at ${explicit}, which does not exist; unset it or point it at a nats-server binary.`);
    process.exit(1);
  }
  if (findOnPath("nats-server")) return;
  if (!isRoot || !findOnPath("apt-get")) {
    say(
      "nats-server is not installed: run `sudo apt-get install -y nats-server` (or set NATS_SERVER_BIN to a nats-server binary), then run this command again.",
    );
    process.exit(1);
  }
  say("installing nats-server with apt-get");
  if (!aptInstall(["nats-server"])) {
    say("apt-get could not install nats-server: run `apt-get update && apt-get install -y nats-server` and try again.");
    process.exit(1);
  }
}

/**
 * The console's browser test drives a real Chromium through playwright-core, whose own browser download needs the
 * internet; Debian's chromium needs only the package mirror. CHROMIUM_BIN names another binary (the test reads it too).
 */
const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";

/** The HTTP benchmark rows use wrk when it is there (test/bench/load-wrk.ts), and the Node loader when it is not. */
function ensureWrk() {
  if (findOnPath(process.env.WRK_BIN || "wrk")) return;
  if (!isRoot || !findOnPath("apt-get")) {
    say(
      "wrk is not installed: the HTTP rows use the Node loader, whose ceiling is near a bare server's (sudo apt-get install -y wrk).",
    );
    return;
  }
  say("installing wrk with apt-get");
  if (!aptInstall(["wrk"])) say("apt-get could not install wrk: the HTTP rows use the Node loader.");
}

function ensureChromium() {
  if (existsSync(CHROMIUM)) return;
  if (process.env.CHROMIUM_BIN) {
    say(`CHROMIUM_BIN points at ${CHROMIUM}, which does not exist; unset it or point it at a Chromium binary.`);
    process.exit(1);
  }
  if (!isRoot || !findOnPath("apt-get")) {
    say(
      "chromium is not installed, and the console's browser test needs it: run `sudo apt-get install -y chromium` (or set CHROMIUM_BIN to a Chromium binary), then run this command again.",
    );
    process.exit(1);
  }
  say("installing chromium with apt-get (for the console's browser test)");
  if (!aptInstall(["chromium"]) || !existsSync(CHROMIUM)) {
    say("apt-get could not install chromium: run `apt-get update && apt-get install -y chromium` and try again.");
    process.exit(1);
  }
}

ensureNodeModules();
ensureNatsServer();
if (process.argv.includes("--browser")) ensureChromium();
if (process.argv.includes("--bench")) ensureWrk();
