/** A line of test output worth keeping in the log (a seed, a measurement), printed under the running test's name. */
export function diagnostic(message: string): void {
  console.log(`# ${message}`);
}
