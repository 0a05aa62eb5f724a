// Builds the dashboard's two served files from their sources (`npm run build:ui`):
//   static/ui.min.js  = uPlot's minified IIFE build, then static/ui/dashboard.js, by terser
//   static/ui.css     = uPlot's stylesheet, then static/ui/dashboard.css
// Both are committed: production needs no Node.js. An output folder other than static/
// may be given (tests/ui/test_assets.py rebuilds into a temporary one and compares).
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { minify } from "terser";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const out = process.argv[2] || join(root, "static");
const read = (path) => readFileSync(join(root, path), "utf8");
const uplot = "node_modules/uplot/dist/";

const result = await minify(
  { "uPlot.iife.min.js": read(uplot + "uPlot.iife.min.js"), "dashboard.js": read("static/ui/dashboard.js") },
  { ecma: 2017, compress: { passes: 2 }, mangle: true, format: { comments: "some" } }
);
writeFileSync(join(out, "ui.min.js"), result.code + "\n");
writeFileSync(join(out, "ui.css"), read(uplot + "uPlot.min.css") + "\n" + read("static/ui/dashboard.css"));
