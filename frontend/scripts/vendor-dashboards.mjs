// Copies the dashboards' browser libraries from node_modules (pinned by package-lock.json) into
// dashboards/static/dashboards/vendor/, which is committed so that serving needs no Node.
// CI rebuilds them and checks the result equals the committed files.
//
// A `sourceMappingURL` comment is removed: the maps are not shipped, and Django's manifest
// static storage (collectstatic with DEBUG off) refuses a file that names a missing map.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const frontend = join(dirname(fileURLToPath(import.meta.url)), "..");
const modules = join(frontend, "node_modules");
const target = join(frontend, "..", "dashboards", "static", "dashboards", "vendor");

// [source under node_modules, name in vendor/]
const FILES = [
  ["uplot/dist/uPlot.iife.min.js", "uPlot.iife.min.js"],
  ["uplot/dist/uPlot.min.css", "uPlot.min.css"],
  ["uplot/LICENSE", "uPlot.LICENSE"],
  ["gridstack/dist/gridstack-all.js", "gridstack-all.js"],
  ["gridstack/dist/gridstack-all.js.LICENSE.txt", "gridstack-all.js.LICENSE.txt"],
  ["gridstack/dist/gridstack.min.css", "gridstack.min.css"],
  ["gridstack/LICENSE", "gridstack.LICENSE"],
];

mkdirSync(target, { recursive: true });
for (const [source, name] of FILES) {
  const from = join(modules, source);
  const to = join(target, name);
  if (/\.(js|css)$/.test(name)) {
    const text = readFileSync(from, "utf8").replace(/\n?\/[/*]# sourceMappingURL=\S+?( \*\/)?\s*$/, "\n");
    writeFileSync(to, text);
  } else {
    copyFileSync(from, to);
  }
  console.log(`vendor/${name} <- node_modules/${source}`);
}
