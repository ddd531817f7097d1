#!/usr/bin/env bash
# Build the image with buildah on a locally made Debian base, then start `nanobrain serve` inside it
# (`buildah run`, sharing this machine's network) and check /health, /ready and one chat answer on 127.0.0.1.
#
#   deploy/check-image.sh            needs root, buildah and debootstrap (apt-get install buildah debootstrap)
#
# The base tarball is kept in ~/.cache/nanobrain-deploy, and the pip cache is a build cache mount,
# so later runs skip debootstrap and the llama.cpp compilation.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${XDG_CACHE_HOME:-$HOME/.cache}/nanobrain-deploy"
base=localhost/bookworm-minbase
image="${IMAGE:-localhost/nanobrain:check}"
port="${PORT:-18080}"
mkdir -p "$cache"

if ! buildah inspect --type image "$base" >/dev/null 2>&1; then
  if [ ! -s "$cache/bookworm-minbase.tar" ]; then
    echo "== debootstrap a minimal bookworm (once)" >&2
    rm -rf "$cache/rootfs"
    debootstrap --variant=minbase bookworm "$cache/rootfs" >"$cache/debootstrap.log"
    tar -C "$cache/rootfs" -c . >"$cache/bookworm-minbase.tar"
    rm -rf "$cache/rootfs"
  fi
  ctr=$(buildah from scratch)
  buildah add "$ctr" "$cache/bookworm-minbase.tar" / >/dev/null
  buildah commit -q "$ctr" "$base" >/dev/null
  buildah rm "$ctr" >/dev/null
fi

# The llama.cpp wheel this machine already compiled (pip's cache, via the venv that scripts/setup.sh made) is
# offered to the build, so the image does not compile it again: minutes instead of twenty on two cores.
wheel_args=()
if [ -x .venv/bin/python ] && llama_version=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))' 2>/dev/null); then
  rm -rf "$cache/wheels" && mkdir -p "$cache/wheels"
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON" \
    .venv/bin/python -m pip wheel -q --no-deps "llama-cpp-python==$llama_version" -w "$cache/wheels" >&2
  # Pinned to that version, or a newer release on the index would be compiled instead.
  echo "llama-cpp-python==$llama_version" >"$cache/wheels/constraints.txt"
  wheel_args=(-v "$cache/wheels:/run/wheels:ro" --build-arg PIP_FIND_LINKS=/run/wheels
              --build-arg PIP_CONSTRAINT=/run/wheels/constraints.txt)
fi

echo "== build $image" >&2
# The host's CA bundle (which trusts a proxy that re-signs TLS, if there is one) is handed to the build, not
# baked into the image: pip's own setting if it has one, else the system bundle.
host_ca=${PIP_CERT:-$(pip config list 2>/dev/null | sed -n "s/^global\.cert='\(.*\)'$/\1/p" | head -1)}
host_ca=${host_ca:-/etc/ssl/certs/ca-certificates.crt}
ca_args=()
if [ -n "$host_ca" ] && [ -r "$host_ca" ]; then
  ca_args=(-v "$host_ca:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt)
fi
buildah bud --isolation chroot --build-arg BASE_IMAGE="$base" "${ca_args[@]}" "${wheel_args[@]}" -f deploy/Dockerfile -t "$image" .

echo "== serve inside the image on 127.0.0.1:$port" >&2
ctr=$(buildah from "$image")
log=$(mktemp)
buildah run --isolation chroot "$ctr" -- nanobrain serve --host 127.0.0.1 --port "$port" >"$log" 2>&1 &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; buildah rm "$ctr" >/dev/null; }
trap cleanup EXIT

url="http://127.0.0.1:$port"
for _ in $(seq 1 120); do
  curl -fsS "$url/ready" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$log" >&2; echo "the server inside the image exited" >&2; exit 1; }
  sleep 1
done
curl -fsS "$url/health" && echo
curl -fsS "$url/ready" && echo
curl -fsS --max-time 120 "$url/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"model": "chat", "messages": [{"role": "user", "content": "Say hello in one short sentence."}], "max_tokens": 32}' \
  | python3 -c 'import json, sys; answer = json.load(sys.stdin)["choices"][0]["message"]["content"]; assert answer.strip(), "empty answer"; print("chat:", answer)'
echo "== the image serves /health, /ready and a chat answer" >&2
