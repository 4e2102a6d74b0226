import type {
  AutoscaleView,
  BuildDetail,
  BuilderView,
  BuildStatus,
  BuildSummary,
  CoordinatorEvent,
  DerivationView,
  WorkerView,
} from "../../src/serve/coordinator-types.js";
import type { DashboardSource } from "../../src/serve/dashboard/routes.js";

/** Text that would run or break out of its element if a renderer forgot to escape it. */
export const HOSTILE = `<script>alert("x")</script><img src=x onerror=alert(1)>'&"`;

export const T0 = Date.parse("2026-11-30T14:00:00.000Z");
export const iso = (offsetMs: number) => new Date(T0 + offsetMs).toISOString();

export function sampleBuilder(over: Partial<BuilderView> = {}): BuilderView {
  return {
    name: "local1",
    systems: ["x86_64-linux"],
    slots: 2,
    inUse: 1,
    health: "up",
    speedFactor: 1,
    trust: "trusted",
    current: [{ buildId: "b1", drv: "/nix/store/aaaa-step-1.drv", name: "step-1" }],
    ...over,
  };
}

export function sampleSummary(over: Partial<BuildSummary> = {}): BuildSummary {
  return {
    id: "b1",
    label: "examples/graph.nix -A all",
    client: "alice",
    status: "running",
    submittedAt: iso(0),
    startedAt: iso(500),
    counts: { total: 4, done: 1, failed: 0, running: 1, queued: 2 },
    ...over,
  };
}

export function sampleDerivation(over: Partial<DerivationView> = {}): DerivationView {
  return {
    drv: "/nix/store/aaaa-step-1.drv",
    name: "step-1",
    builder: "local1",
    status: "built",
    startedAt: iso(600),
    finishedAt: iso(2100),
    attempts: 1,
    ...over,
  };
}

export function sampleDetail(over: Partial<BuildDetail> = {}): BuildDetail {
  const { finishedAt: _running, ...step2 } = sampleDerivation({
    drv: "/nix/store/bbbb-step-2.drv",
    name: "step-2",
    status: "running",
  });
  return { ...sampleSummary(), derivations: [sampleDerivation(), step2], outputs: [], ...over };
}

export function sampleWorker(over: Partial<WorkerView> = {}): WorkerView {
  return {
    name: "nixpool-w1",
    serverType: "cx22",
    startedAt: iso(-3_600_000),
    costSoFar: 0.0068,
    currency: "EUR",
    ...over,
  };
}

/**
 * A dashboard source holding plain values that a test changes, and the events a test sends:
 * what the coordinator would report, without one running.
 */
export class FixtureSource implements DashboardSource {
  builderViews: BuilderView[] = [sampleBuilder(), sampleBuilder({ name: "local2", inUse: 0, current: [] })];
  details = new Map<string, BuildDetail>([["b1", sampleDetail()]]);
  logs = new Map<string, string>([
    ["b1 /nix/store/aaaa-step-1.drv", "building step-1\n\x1b[31mred\x1b[0m line\n"],
  ]);
  svg = new Map<string, string>();
  workerViews: WorkerView[] = [];
  private listeners = new Set<(e: CoordinatorEvent) => void>();

  builders(): BuilderView[] {
    return this.builderViews;
  }
  builds(q: { limit?: number; status?: BuildStatus } = {}): Promise<BuildSummary[]> {
    const all = [...this.details.values()]
      .filter((b) => q.status === undefined || b.status === q.status)
      .sort((a, b) => b.submittedAt.localeCompare(a.submittedAt));
    return Promise.resolve(
      all.slice(0, q.limit ?? all.length).map((d) => {
        const { derivations: _d, outputs: _o, error: _e, ...summary } = d;
        return summary;
      }),
    );
  }
  build(id: string): Promise<BuildDetail | undefined> {
    return Promise.resolve(this.details.get(id));
  }
  derivationLog(id: string, drv: string): Promise<string | undefined> {
    return Promise.resolve(this.logs.get(`${id} ${drv}`));
  }
  timelineSvg(id: string): Promise<string | undefined> {
    return Promise.resolve(this.svg.get(id));
  }
  workers(): WorkerView[] {
    return this.workerViews;
  }
  autoscaleView: AutoscaleView | undefined = undefined;
  autoscale(): AutoscaleView | undefined {
    return this.autoscaleView;
  }
  subscribe(fn: (e: CoordinatorEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
  emit(e: CoordinatorEvent): void {
    for (const fn of this.listeners) fn(e);
  }
}
