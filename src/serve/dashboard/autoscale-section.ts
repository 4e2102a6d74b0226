import type { AutoscaleView } from "../coordinator-types.js";
import { markup, type Html } from "./html.js";

const money = (n: number) => n.toFixed(2);

/** The overview's autoscaler section: the last plan, why nothing is rented (a budget cap), the workers, the last decisions. */
export function renderAutoscaleSection(a: AutoscaleView | undefined): Html {
  if (!a) return markup``;
  const caps = (["hour", "day", "month"] as const).filter((w) => a.budget[w] !== undefined);
  const budget = caps.length
    ? caps.map(
        (w) =>
          markup`<span data-budget="${w}">${w}: ${money(a.spent[w])} of ${money(a.budget[w] ?? 0)} EUR</span> `,
      )
    : markup`<span>no budget; today ${money(a.spent.day)} EUR</span>`;
  const blocked = a.blocked.map((b) => markup`<li class="blocked">${b}</li>`);
  const workers =
    a.workers.length === 0
      ? markup`<tr class="empty"><td colspan="5">no autoscaled worker</td></tr>`
      : a.workers.map(
          (w) =>
            markup`<tr><td class="name">${w.name}</td><td>${w.serverType}</td><td>${w.status}</td><td>${w.running}</td><td>${w.paidUntil.slice(11, 19)}</td></tr>`,
        );
  const snapshots = a.snapshots
    ? markup`<p class="snapshots" data-field="autoscale-snapshots">snapshots: ${a.snapshots.count} (${a.snapshots.gb.toFixed(1)} GB, ${money(a.snapshots.monthly)} EUR/month)</p>`
    : markup``;
  const decisions = a.decisions
    .slice(0, 10)
    .map((d) => markup`<li data-action="${d.action}"><time>${d.at.slice(11, 19)}</time> ${d.reason}</li>`);
  return markup`<section id="autoscale-section">
<h2>Autoscaling <small>${a.settings.minWorkers}–${a.settings.maxWorkers} workers${a.leader ? "" : " (another coordinator leads)"}</small></h2>
<p class="summary" data-field="autoscale-summary">${a.summary}</p>
<p class="budget">${budget}</p>
${snapshots}
${blocked.length ? markup`<ul class="autoscale-blocked">${blocked}</ul>` : markup``}
<table class="autoscale-workers">
<thead><tr><th>Worker</th><th>Type</th><th>Status</th><th>Busy</th><th>Paid until</th></tr></thead>
<tbody>
${workers}
</tbody>
</table>
<ol class="autoscale-decisions">${decisions}</ol>
</section>`;
}
