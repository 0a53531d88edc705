// Test runner settings: real nats-servers per suite make files independent, so run them in
// parallel forks but bound the pool to the machine's two cores.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
