#!/usr/bin/env node
// Entry point of the `mig` binary: loads TypeScript through tsx, then runs the CLI.
import { register } from "tsx/esm/api";

register();
await import("./main.ts");
