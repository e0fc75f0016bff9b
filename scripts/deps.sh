#!/bin/sh
# Checks that the Debian packages a target needs are installed. As root with apt-get,
# installs what is missing; otherwise prints the exact command and fails.
# Usage: scripts/deps.sh build|run|test|bench|sanitize|clang
set -eu

build="cmake make gcc pkg-config libopenblas-openmp-dev libcjson-dev zlib1g-dev libcairo2-dev libpng-dev"
case "${1:-build}" in
  build) want="$build" ;;
  run)   want="$build dataset-fashion-mnist" ;;
  test)  want="$build dataset-fashion-mnist fortunes" ;;
  bench) want="$build dataset-fashion-mnist fortunes python3-torch python3-pil hyperfine time" ;;
  sanitize) want="$build dataset-fashion-mnist fortunes clang libclang-rt-14-dev" ;;
  clang) want="$build dataset-fashion-mnist fortunes clang libclang-rt-14-dev libomp-14-dev" ;;
  *) echo "usage: $0 build|run|test|bench|sanitize|clang" >&2; exit 2 ;;
esac

missing=""
for pkg in $want; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  case "$status" in
    *"install ok installed"*) ;;
    *) missing="$missing $pkg" ;;
  esac
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ember: installing missing packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends $missing || {
    apt-get update && apt-get install -y --no-install-recommends $missing; }
  exit 0
fi
echo "ember: missing Debian packages:$missing" >&2
echo "Install them with:" >&2
echo "  sudo apt-get install -y$missing" >&2
exit 1
