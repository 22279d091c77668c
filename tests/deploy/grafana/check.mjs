// check.mjs - type-check Grafana dashboards against npm @grafana/schema.
//
//   node check.mjs DIR      (every *.json in DIR; exit 1 on any error)
//
// Each dashboard is written out as a TypeScript object literal typed as
// @grafana/schema's Dashboard, and each panel's options and field config as
// that panel type's Options / FieldConfig (timeseries, stat, heatmap), then
// compiled by tsc in strict mode: a misspelt or unknown key (excess
// property), a wrong type or an unknown enum value fails. Enum-typed fields
// accept their values as written in JSON ("table" for
// LegendDisplayMode.Table): the Json<T> type below maps an enum to the union
// of its values.
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dir = resolve(process.argv[2] ?? "../../../deploy/grafana/dashboards");
const out = join(here, ".check");
rmSync(out, { recursive: true, force: true });
mkdirSync(out);

// panel type -> [the schema's name for it, whether it has a FieldConfig type]
const PANEL_TYPES = {
  timeseries: ["TimeSeries", true],
  stat: ["Stat", false],
  heatmap: ["Heatmap", true],
};

const header = `
import type { Dashboard, Panel } from "@grafana/schema";
${Object.entries(PANEL_TYPES)
  .map(
    ([t, [n, fc]]) =>
      `import type { Options as ${n}Options${fc ? `, FieldConfig as ${n}FieldConfig` : ""} } from "@grafana/schema/dist/esm/raw/composable/${t}/panelcfg/x/${n}PanelCfg_types.gen";` +
      (fc ? "" : `\ntype ${n}FieldConfig = Record<string, unknown>;`),
  )
  .join("\n")}

// JSON spelling of a type: enums as the union of their values.
type Json<T> = T extends string
  ? \`\${T}\`
  : T extends number | boolean | null | undefined
    ? T
    : T extends (infer U)[]
      ? Json<U>[]
      : T extends object
        ? { [K in keyof T]: Json<T[K]> }
        : T;
type Typed<O, F> = Omit<Json<Panel>, "options" | "fieldConfig"> & {
  options?: Json<O>;
  fieldConfig?: {
    defaults: Json<NonNullable<Panel["fieldConfig"]>["defaults"]> & { custom?: Json<F> };
    overrides: Json<NonNullable<Panel["fieldConfig"]>["overrides"]>;
  };
};
`;

const files = readdirSync(dir).filter((f) => f.endsWith(".json"));
if (files.length === 0) {
  console.error(`no dashboards in ${dir}`);
  process.exit(1);
}
const sources = [];
for (const f of files) {
  const dash = JSON.parse(readFileSync(join(dir, f), "utf8"));
  const { panels = [], ...meta } = dash;
  const lines = [header];
  const names = [];
  panels.forEach((p, i) => {
    const n = PANEL_TYPES[p.type]?.[0];
    if (!n) {
      console.error(`${f}: panel ${p.id} "${p.title}": type ${p.type} has no checker here`);
      process.exit(1);
    }
    lines.push(
      `const panel${i} = ${JSON.stringify(p, null, 2)} satisfies Typed<${n}Options, ${n}FieldConfig>;`,
    );
    names.push(`panel${i}`);
  });
  lines.push(
    `const dashboard = { ...${JSON.stringify(meta, null, 2)}, panels: [${names.join(", ")}] } satisfies Json<Dashboard>;`,
  );
  lines.push(`export const _check: Dashboard = dashboard as unknown as Dashboard;`);
  const src = join(out, basename(f, ".json") + ".ts");
  writeFileSync(src, lines.join("\n\n") + "\n");
  sources.push(src);
}
writeFileSync(
  join(out, "tsconfig.json"),
  JSON.stringify({
    compilerOptions: {
      strict: true,
      noEmit: true,
      target: "ES2022",
      module: "ESNext",
      moduleResolution: "Bundler",
      skipLibCheck: true,
      types: [],
    },
    files: sources.map((s) => basename(s)),
  }),
);
const tsc = join(here, "node_modules", "typescript", "bin", "tsc");
try {
  execFileSync(process.execPath, [tsc, "-p", join(out, "tsconfig.json")], { stdio: "inherit" });
} catch {
  console.error("dashboard type check failed");
  process.exit(1);
}
for (const f of files) console.log(`ok   ${f}`);
