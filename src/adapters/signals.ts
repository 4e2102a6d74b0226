/**
 * Aborts `controller` on the first of `signals`; later ones are ignored so that cleanup can
 * finish. Returns the function that removes the trap.
 *
 * `process.on`, never `once`: execa's signal-exit re-raises a signal when it sees no other
 * listener, and a `once` listener is gone by then, so nixpool would die before cleaning up.
 */
export function trapSignals(
  controller: AbortController,
  options: {
    signals?: NodeJS.Signals[];
    /** Called once, with the first signal. */
    onFirst?: (sig: NodeJS.Signals) => void;
    /** Signals for which this returns true are left alone (e.g. Ctrl-C meant for a child shell). */
    ignore?: (sig: NodeJS.Signals) => boolean;
  } = {},
): () => void {
  const signals = options.signals ?? ["SIGINT", "SIGTERM"];
  const onSignal = (sig: NodeJS.Signals) => {
    if (options.ignore?.(sig)) return;
    if (controller.signal.aborted) return;
    options.onFirst?.(sig);
    controller.abort();
  };
  for (const s of signals) process.on(s, onSignal);
  return () => {
    for (const s of signals) process.off(s, onSignal);
  };
}
