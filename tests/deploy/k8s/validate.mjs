// validate.mjs - check Kubernetes manifests against the API schemas with
// kubernetes-models (`new Deployment(obj).validate()` and so on).
//
//   node validate.mjs <folder or file>...
//
// Prints one line per object; exits 1 if any object is invalid or of a kind
// this does not know. A deliberately broken Deployment is checked first, so
// that a validator that accepts everything fails the run.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";

async function modelFor(apiVersion, kind) {
  // "apps/v1" -> kubernetes-models/apps/v1, "v1" -> kubernetes-models/v1
  const mod = await import(`kubernetes-models/${apiVersion}`);
  if (!mod[kind]) throw new Error(`unknown kind ${kind} in ${apiVersion}`);
  return mod[kind];
}

async function validate(obj) {
  const Model = await modelFor(obj.apiVersion, obj.kind);
  new Model(obj).validate();
}

const files = process.argv.slice(2).flatMap((p) =>
  statSync(p).isDirectory()
    ? readdirSync(p).filter((f) => /\.ya?ml$/.test(f)).sort().map((f) => join(p, f))
    : [p]);
if (files.length === 0) {
  console.error("usage: node validate.mjs <folder or file>...");
  process.exit(2);
}

let broken = false;
try {
  await validate({ apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "x" },
    spec: { replicas: "three", selector: { matchLabels: { a: "b" } },
      template: { metadata: { labels: { a: "b" } }, spec: { containers: [{ name: "c" }] } } } });
} catch {
  broken = true;
}
if (!broken) {
  console.error("FAIL validator self-check: replicas: \"three\" was accepted");
  process.exit(1);
}

let failed = 0;
for (const file of files) {
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    if (doc.errors.length) {
      console.log(`FAIL ${file}: YAML: ${doc.errors[0].message}`);
      failed++;
      continue;
    }
    const obj = doc.toJS();
    if (obj == null) continue;
    if (String(obj.apiVersion).startsWith("kustomize.config.k8s.io/")) {
      console.log(`skip ${file}: ${obj.kind} (kustomize's, not an API object)`);
      continue;
    }
    const what = `${file}: ${obj.kind} ${obj.metadata?.name}`;
    try {
      await validate(obj);
      console.log(`ok   ${what}`);
    } catch (e) {
      console.log(`FAIL ${what}: ${e.message}`);
      failed++;
    }
  }
}
process.exit(failed ? 1 : 0);
