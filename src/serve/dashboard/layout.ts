import { markup, type Html } from "./html.js";

/** Where the page's script, style sheet and icon are served (routes.ts); the CSP allows only 'self'. */
export const ASSET_PATHS = {
  script: "/assets/dashboard.js",
  style: "/assets/dashboard.css",
  icon: "/assets/favicon.svg",
} as const;

/** Which page this is; an error page gets no live updates. */
export type DashboardPage = "overview" | "build" | "history" | "error";

export interface LayoutOptions {
  title: string;
  page: DashboardPage;
  /** The build a build page shows: the script follows its events. */
  buildId?: string;
  body: Html;
}

const NAV: { page: DashboardPage; href: string; label: string }[] = [
  { page: "overview", href: "/", label: "Overview" },
  { page: "history", href: "/history", label: "History" },
];

/**
 * A whole page: no inline script or style (the Content-Security-Policy allows neither), the
 * live-update script loaded from ASSET_PATHS. The status line says whether live updates arrive.
 */
export function renderLayout(o: LayoutOptions): Html {
  const nav = NAV.map(
    (n) => markup`<a href="${n.href}"${n.page === o.page ? markup` aria-current="page"` : ""}>${n.label}</a>`,
  );
  const buildId = o.buildId !== undefined ? markup` data-build-id="${o.buildId}"` : "";
  return markup`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${o.title} · nixpool</title>
<link rel="icon" href="${ASSET_PATHS.icon}" type="image/svg+xml">
<link rel="stylesheet" href="${ASSET_PATHS.style}">
<script src="${ASSET_PATHS.script}" defer></script>
</head>
<body data-page="${o.page}"${buildId}>
<header>
<span class="brand">nixpool</span>
<nav>${nav}</nav>
<span id="live" class="live" data-state="off" title="live updates from /api/events">not live</span>
</header>
<main>
${o.body}
</main>
<footer>Times are UTC.</footer>
</body>
</html>
`;
}
