import type { CacheStatsView } from "../cache/cache-stats.js";
import { formatSize } from "./format.js";
import { markup, type Html } from "./html.js";

/** One row of the most requested paths (the script fills clones of it from `cache` events). */
function topRow(p: CacheStatsView["topPaths"][number] | undefined): Html {
  return markup`<tr><td class="name" data-field="path" title="${p?.path ?? ""}">${p ? p.path.slice(44) || p.path : ""}</td>
<td data-field="nars">${p?.nars ?? ""}</td><td data-field="bytes">${p ? formatSize(p.bytes) : ""}</td></tr>`;
}

/**
 * The overview's binary cache section: hits, bytes served, cut downloads, the most requested paths.
 * Every number has a `data-count` and the table a row template: the dashboard's script keeps them
 * current from the `cache` events of /api/events, without a reload.
 */
export function renderCacheSection(s: CacheStatsView | undefined): Html {
  if (!s) {
    return markup`<section id="cache-section"><h2>Binary cache</h2><p class="none">Not served (nixpool serve --no-cache).</p></section>`;
  }
  const rows =
    s.topPaths.length === 0
      ? markup`<tr class="empty"><td colspan="3">nothing downloaded yet</td></tr>`
      : s.topPaths.map((p) => topRow(p));
  return markup`<section id="cache-section">
<h2>Binary cache <small><span data-count="cache-servable">${s.servable}</span> trusted results offered at /cache</small></h2>
<p class="summary"><span data-count="cache-hits">${s.narinfoHits}</span> hits and <span data-count="cache-misses">${s.narinfoMisses}</span> misses of <span data-count="cache-requests">${s.narinfoRequests}</span> narinfo requests; <span data-count="cache-nars">${s.narsServed}</span> NARs served, <span data-count="cache-bytes" title="${s.bytesServed} bytes">${formatSize(s.bytesServed)}</span> sent, <span data-count="cache-cut">${s.narsCut}</span> cut, <span data-count="cache-resumed">${s.rangeRequests}</span> resumed.</p>
<table class="cache-top">
<thead><tr><th>Most requested</th><th>NARs</th><th>Sent</th></tr></thead>
<tbody id="cache-top" data-empty="nothing downloaded yet">
${rows}
</tbody>
</table>
<template id="cache-top-row">${topRow(undefined)}</template>
</section>`;
}
