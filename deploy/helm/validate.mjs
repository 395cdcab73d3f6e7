// Validates rendered manifests (a multi-document YAML file, argv[2]) against the Kubernetes API
// schemas in kubernetes-models: kubectl's own validation needs a cluster, this does not.
// Run by check.sh with kubernetes-models and yaml installed in a temporary folder.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

let failures = 0;
let count = 0;
for (const document of parseAllDocuments(readFileSync(process.argv[2], "utf8"))) {
  const manifest = document.toJS();
  if (!manifest) continue;
  count++;
  const [group, version] = manifest.apiVersion.includes("/") ? manifest.apiVersion.split("/") : [undefined, manifest.apiVersion];
  const path = group ? `kubernetes-models/${group}/${version}/${manifest.kind}` : `kubernetes-models/${version}/${manifest.kind}`;
  const label = `${manifest.kind}/${manifest.metadata?.name}`;
  try {
    const { [manifest.kind]: Model } = await import(path);
    new Model(manifest).validate();
    console.log(`ok   ${label} (${manifest.apiVersion})`);
  } catch (error) {
    failures++;
    console.log(`FAIL ${label}: ${error.message}`);
  }
}
if (count === 0) {
  console.log("no manifests rendered");
  process.exit(1);
}
process.exit(failures ? 1 : 0);
