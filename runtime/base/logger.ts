// The process logger: pino, structured, quiet at info (one line per listener and lifecycle change).
import { type Logger, pino } from "pino";

export type { Logger };

export function createLogger(level: string, name = "mig"): Logger {
  return pino({ name, level, base: { pid: process.pid } });
}
