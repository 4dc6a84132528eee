#!/usr/bin/env bash
# Builds OpenSSL's FIPS provider (fips.so) from Debian's own openssl source package and
# installs it with `openssl fipsinstall`, so that the FIPS tests can run on a machine whose
# OpenSSL ships no FIPS module. Debian's archive is the only source used.
#
# Usage: testdata/fips/build.sh [DIR]     (default DIR: ${XDG_CACHE_HOME:-$HOME/.cache}/tlszmq-fips)
# Result: DIR/fips.so, DIR/fipsmodule.cnf and DIR/openssl-fips.cnf (a configuration that
# activates the module with fips=yes as the default property). A second run reuses them.
set -euo pipefail

dir=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/tlszmq-fips}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

if [ -f "$dir/fips.so" ] && [ -f "$dir/fipsmodule.cnf" ] && [ -f "$dir/openssl-fips.cnf" ]; then
  echo "fips: cached module in $dir"
  exit 0
fi

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# A deb-src entry derived from the machine's Debian deb entries (deb822 and one-line styles).
src=/etc/apt/sources.list.d/tlszmq-deb-src.sources
if ! apt-get source --print-uris openssl >/dev/null 2>&1; then
  tmp=$(mktemp)
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && [ "$f" != "$src" ] || continue
    awk 'BEGIN{RS=""; ORS="\n\n"} /URIs:[^\n]*debian/ && /Types:[^\n]*deb/ {sub(/Types:[^\n]*/, "Types: deb-src"); print}' "$f" >>"$tmp"
  done
  if [ -f /etc/apt/sources.list ]; then
    awk '$1=="deb" && /debian/ {
      line=$0; sub(/^deb[ \t]+/, "", line)
      opts=""; if (line ~ /^\[/) { opts=substr(line, 2, index(line, "]")-2); line=substr(line, index(line, "]")+1) }
      split(line, w, " "); printf "Types: deb-src\nURIs: %s\nSuites: %s\nComponents:", w[1], w[2]
      for (i=3; i in w; i++) printf " %s", w[i]; printf "\n"
      if (opts ~ /signed-by=/) { s=opts; sub(/.*signed-by=/, "", s); sub(/[ \t].*/, "", s); printf "Signed-By: %s\n", s }
      printf "\n" }' /etc/apt/sources.list >>"$tmp"
  fi
  [ -s "$tmp" ] || { echo "fips: no Debian apt source found to derive a deb-src entry from" >&2; exit 1; }
  as_root cp "$tmp" "$src"
  rm -f "$tmp"
  as_root apt-get update -qq
fi
command -v dpkg-source >/dev/null || as_root apt-get install -y -qq dpkg-dev
command -v make >/dev/null && command -v perl >/dev/null || as_root apt-get install -y -qq make perl gcc

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
# The newest source of the 3.0 series that Debian serves (the FIPS provider of 3.0 runs under
# any 3.0.x libcrypto). A mirror may list a version whose files it no longer has: try each, and
# fall back to the upstream tarball (the .orig.tar.gz) when only that arrived.
vers=$(apt-cache showsrc openssl | awk '/^Version: 3\.0\./ {print $2}' | sort -Vru)
[ -n "$vers" ] || { echo "fips: Debian offers no openssl 3.0 source package" >&2; exit 1; }
for ver in $vers; do
  echo "fips: fetching the source of openssl $ver"
  apt-get source -qq "openssl=$ver" >/dev/null 2>&1 && break
  orig=$(ls openssl_3.0.*.orig.tar.gz 2>/dev/null | head -n 1)
  if [ -n "$orig" ]; then tar xzf "$orig"; break; fi
done
ls -d openssl-3.0.*/ >/dev/null 2>&1 || { echo "fips: could not fetch any openssl 3.0 source" >&2; exit 1; }
cd "$(ls -d openssl-3.0.*/ | head -n 1)"
echo "fips: building providers/fips.so in $(basename "$PWD")"
./Configure enable-fips no-tests linux-"$(uname -m)" >/dev/null
make -s -j"$(nproc)" build_generated >/dev/null
make -s -j"$(nproc)" providers/fips.so >/dev/null
cp providers/fips.so "$dir/fips.so"
openssl fipsinstall -module "$dir/fips.so" -out "$dir/fipsmodule.cnf" -provider_name fips
cat >"$dir/openssl-fips.cnf" <<CNF
# Activates the FIPS provider built by testdata/fips/build.sh ($(basename "$PWD")), with the base
# provider for key encoders and decoders, and fips=yes as the default property.
config_diagnostics = 1
openssl_conf = openssl_init

.include $dir/fipsmodule.cnf

[openssl_init]
providers = provider_sect
alg_section = algorithm_sect

[provider_sect]
fips = fips_sect
base = base_sect

[base_sect]
activate = 1

[algorithm_sect]
default_properties = fips=yes
CNF
echo "fips: module installed in $dir"
