import { formatBytes } from "../../core/doctor/builder-verdict-helpers.js";
import type { CacheStatsView } from "../cache/cache-stats.js";
import { markup, type Html } from "./html.js";

/** The overview's binary cache section: hits, bytes served, cut downloads, the most requested paths. */
export function renderCacheSection(s: CacheStatsView | undefined): Html {
  if (!s) {
    return markup`<section id="cache-section"><h2>Binary cache</h2><p class="none">Not served (nixpool serve --no-cache).</p></section>`;
  }
  const rows =
    s.topPaths.length === 0
      ? markup`<tr class="empty"><td colspan="3">nothing downloaded yet</td></tr>`
      : s.topPaths.map(
          (p) => markup`<tr><td class="name" title="${p.path}">${p.path.slice(44) || p.path}</td>
<td>${p.nars}</td><td>${formatBytes(p.bytes)}</td></tr>`,
        );
  return markup`<section id="cache-section">
<h2>Binary cache <small><span data-count="cache-servable">${s.servable}</span> trusted results offered at /cache</small></h2>
<p class="summary"><span data-count="cache-hits">${s.narinfoHits}</span> hits and <span data-count="cache-misses">${s.narinfoMisses}</span> misses of ${s.narinfoRequests} narinfo requests; <span data-count="cache-nars">${s.narsServed}</span> NARs served, <span data-count="cache-bytes">${formatBytes(s.bytesServed)}</span> sent, ${s.narsCut} cut, ${s.rangeRequests} resumed.</p>
<table class="cache-top">
<thead><tr><th>Most requested</th><th>NARs</th><th>Sent</th></tr></thead>
<tbody>
${rows}
</tbody>
</table>
</section>`;
}
