import type { DerivationRecord, PhaseSpan } from "../../src/core/build-record.js";

/** A record with defaults for the fields a test does not care about. */
export function makeRecord(fields: Partial<DerivationRecord> & { name: string }): DerivationRecord {
  return {
    drv: `/nix/store/${"a".repeat(32)}-${fields.name}.drv`,
    status: "built",
    builder: null,
    slot: null,
    attempts: fields.spans && fields.spans.length > 0 ? 1 : 0,
    retries: [],
    readyMs: 0,
    startedMs: fields.spans?.[0]?.startMs ?? null,
    finishedMs: fields.spans?.[fields.spans.length - 1]?.endMs ?? null,
    spans: [],
    error: null,
    ...fields,
  };
}

/** The spans of one attempt on one slot: upload, build, download back to back from `startMs`. */
export function attemptSpans(
  builder: string,
  slot: number,
  startMs: number,
  phases: { upload?: number; build: number; download?: number },
): PhaseSpan[] {
  const spans: PhaseSpan[] = [];
  let t = startMs;
  for (const phase of ["upload", "build", "download"] as const) {
    const ms = phases[phase];
    if (ms === undefined) continue;
    spans.push({ phase, builder, slot, startMs: t, endMs: t + ms });
    t += ms;
  }
  return spans;
}

/**
 * A plausible build of `n` leaves and a root on `builders`, greedily scheduled on the first free
 * slot, deterministic: leaf i builds for 300 + (i × 37 mod 400) ms. When `failOn` names a builder,
 * its third derivation loses the connection and is retried elsewhere; `cached` leaves are cached.
 */
export function simulateBuild(
  n: number,
  builders: readonly { name: string; slots: number }[],
  opts: { failOn?: string; cached?: number } = {},
): { records: DerivationRecord[]; wallMs: number } {
  const free: { builder: string; slot: number; at: number }[] = builders.flatMap((b) =>
    Array.from({ length: b.slots }, (_, i) => ({ builder: b.name, slot: i + 1, at: 150 })),
  );
  const take = () => {
    free.sort((a, b) => a.at - b.at || a.builder.localeCompare(b.builder) || a.slot - b.slot);
    const f = free[0];
    if (!f) throw new Error("no slots");
    return f;
  };
  const records: DerivationRecord[] = [];
  let failedOnce = 0;
  for (let i = 0; i < n; i++) {
    const name = `leaf-${i}`;
    if (i < (opts.cached ?? 0)) {
      records.push(makeRecord({ name, status: "cached", readyMs: null, startedMs: null, finishedMs: null }));
      continue;
    }
    const build = 300 + ((i * 37) % 400);
    let slot = take();
    const spans: PhaseSpan[] = [];
    const retries: DerivationRecord["retries"] = [];
    if (opts.failOn === slot.builder && failedOnce++ === 2) {
      spans.push(...attemptSpans(slot.builder, slot.slot, slot.at, { upload: 40, build: build / 2 }));
      retries.push({ builder: slot.builder, reason: `builder ${slot.builder} lost the connection` });
      const failedBuilder = slot.builder;
      // The builder is down from now on: nothing more is scheduled there.
      for (const f of free) if (f.builder === failedBuilder) f.at = Infinity;
      slot = free.filter((f) => f.builder !== failedBuilder).sort((a, b) => a.at - b.at)[0] ?? slot;
      slot.at = Math.max(slot.at, spans[spans.length - 1]?.endMs ?? 0);
    }
    spans.push(...attemptSpans(slot.builder, slot.slot, slot.at + 5, { upload: 30, build, download: 25 }));
    slot.at = (spans[spans.length - 1]?.endMs ?? 0) + 5;
    records.push(
      makeRecord({
        name,
        builder: slot.builder,
        slot: slot.slot,
        attempts: retries.length + 1,
        retries,
        readyMs: 100,
        spans,
      }),
    );
  }
  const leavesDone = Math.max(...records.flatMap((r) => r.spans.map((s) => s.endMs)), 150);
  const rootSlot = take();
  const rootSpans = attemptSpans(rootSlot.builder, rootSlot.slot, leavesDone + 10, {
    upload: 60,
    build: 50,
    download: 20,
  });
  records.push(
    makeRecord({
      name: "graph-root",
      builder: rootSlot.builder,
      slot: rootSlot.slot,
      readyMs: leavesDone,
      spans: rootSpans,
    }),
  );
  return { records, wallMs: (rootSpans[rootSpans.length - 1]?.endMs ?? 0) + 40 };
}
