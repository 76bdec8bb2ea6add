// Bundles src/index.js into ../flowyard_ui/static/vendor/codemirror.min.js (one minified
// ES module), with the licenses of every package in it and a manifest of their versions
// (tests/ui/test_code_editor.py compares it with package-lock.json). Run by bin/build-editor.
import { build } from "esbuild";
import { readFileSync, writeFileSync, mkdirSync, readdirSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "flowyard_ui", "static", "vendor");
mkdirSync(out, { recursive: true });

const result = await build({
  entryPoints: [join(here, "src", "index.js")],
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2020",
  legalComments: "none",
  metafile: true,
  outfile: join(out, "codemirror.min.js"),
});

// the packages that ended up in the bundle, from the files esbuild read
const used = new Set();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (m) used.add(m[1]);
}
const names = [...used].sort();
const packages = {};
const licenses = [];
for (const name of names) {
  const dir = join(here, "node_modules", name);
  const meta = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  packages[name] = meta.version;
  const file = readdirSync(dir).find((f) => /^(LICEN[CS]E|COPYING)/i.test(f));
  const text = file ? readFileSync(join(dir, file), "utf8").trim() : `License: ${meta.license}`;
  licenses.push(`${name} ${meta.version} (${meta.license})\n${"-".repeat(60)}\n${text}\n`);
}
writeFileSync(
  join(out, "codemirror.LICENSE.txt"),
  "The Flowyard editor bundle (codemirror.min.js) holds these packages from the npm registry.\n\n" +
    licenses.join("\n"),
);
const esbuildVersion = JSON.parse(readFileSync(join(here, "node_modules", "esbuild", "package.json"), "utf8")).version;
writeFileSync(
  join(out, "codemirror.manifest.json"),
  JSON.stringify({ bundle: "codemirror.min.js", built_with: { esbuild: esbuildVersion }, packages }, null, 2) + "\n",
);
if (!existsSync(join(out, "codemirror.min.js"))) throw new Error("no bundle written");
console.log(`codemirror.min.js: ${readFileSync(join(out, "codemirror.min.js")).length} bytes, ${names.length} packages`);
