// Lets a benchmark child (baseline server) end itself when the orchestrator goes away, even
// if the orchestrator was killed too hard to stop its children: it holds our stdin open.
export function exitWithParent(): void {
  process.stdin.on("end", () => process.exit(0));
  process.stdin.on("error", () => process.exit(0));
  process.stdin.resume();
}
