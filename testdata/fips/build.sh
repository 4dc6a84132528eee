#!/usr/bin/env bash
# Builds OpenSSL's FIPS provider (fips.so) from Debian's own openssl source package and
# installs it with `openssl fipsinstall`, so that the FIPS tests can run on a machine whose
# OpenSSL ships no FIPS module. Debian's archive is the only source used.
#
# Usage: testdata/fips/build.sh [DIR]     (default DIR: ${XDG_CACHE_HOME:-$HOME/.cache}/tlszmq-fips)
# Result: DIR/fips.so, DIR/fipsmodule.cnf and DIR/openssl-fips.cnf (a configuration that
# activates the module with fips=yes as the default property). A second run reuses them.
#
# The machine's configuration is left alone: the source package comes through a private apt
# setup in a temporary directory (deb-src entries derived from the machine's Debian deb
# entries, read only; apt's lists and caches of its own), which goes away at the end. Nothing
# under /etc or /var is written, and fetching the source needs no root. apt still checks the
# archive's signature (the keyrings the deb entries name) and every file's checksum.
set -euo pipefail

dir=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/tlszmq-fips}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

if [ -f "$dir/fips.so" ] && [ -f "$dir/fipsmodule.cnf" ] && [ -f "$dir/openssl-fips.cnf" ]; then
  echo "fips: cached module in $dir"
  exit 0
fi

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# The tools: `make deps` installs them; run alone, this script says what it installs.
missing=
command -v dpkg-source >/dev/null || missing="$missing dpkg-dev"
command -v make >/dev/null || missing="$missing make"
command -v perl >/dev/null || missing="$missing perl"
command -v gcc >/dev/null || missing="$missing gcc"
command -v openssl >/dev/null || missing="$missing openssl"
if [ -n "$missing" ]; then
  echo "fips: installing the Debian packages$missing (apt-get install)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
apt=$work/apt
mkdir -p "$apt/sources.list.d" "$apt/lists/partial" "$apt/cache/archives/partial" "$work/src"

# deb-src entries derived from the machine's Debian deb entries (deb822 and one-line styles).
src=$apt/sources.list.d/debian-src.sources
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] && [ -r "$f" ] || continue
  awk 'BEGIN { RS = "" }
    { n = split($0, line, "\n"); deb = 0; debian = 0; enabled = 1; out = ""
      for (i = 1; i <= n; i++) {
        if (line[i] ~ /^Types:/) {
          m = split(substr(line[i], 7), w, /[ \t]+/); for (j = 1; j <= m; j++) if (w[j] == "deb") deb = 1
          line[i] = "Types: deb-src"
        } else if (line[i] ~ /^URIs:/ && line[i] ~ /debian/) debian = 1
        else if (line[i] ~ /^Enabled:[ \t]*[Nn]o/) enabled = 0
        out = out line[i] "\n"
      }
      if (deb && debian && enabled) printf "%s\n", out }' "$f" >>"$src"
done
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [ -f "$f" ] && [ -r "$f" ] || continue
  awk '$1=="deb" && /debian/ {
    line=$0; sub(/^deb[ \t]+/, "", line)
    opts=""; if (line ~ /^\[/) { opts=substr(line, 2, index(line, "]")-2); line=substr(line, index(line, "]")+1) }
    split(line, w, " "); printf "Types: deb-src\nURIs: %s\nSuites: %s\nComponents:", w[1], w[2]
    for (i=3; i in w; i++) printf " %s", w[i]; printf "\n"
    if (opts ~ /signed-by=/) { s=opts; sub(/.*signed-by=/, "", s); sub(/[ \t].*/, "", s); printf "Signed-By: %s\n", s }
    printf "\n" }' "$f" >>"$src"
done
[ -s "$src" ] || { echo "fips: no Debian apt source found to derive a deb-src entry from" >&2; exit 1; }

# apt reads these sources only, and keeps its lists, caches and locks under $apt. As root, apt
# downloads as its unprivileged _apt user: let it reach the directories it writes.
aptopts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/sources.list.d"
         -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache")
if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then
  chmod 755 "$work" "$apt"
  chown _apt "$apt/lists/partial" "$apt/cache/archives/partial" "$work/src"
fi
echo "fips: reading Debian's openssl sources (a private apt list in $work)"
# A source that fails (a mirror that is down, a third-party repository with no sources) is
# reported by apt and skipped; only what is left decides below.
apt-get "${aptopts[@]}" -qq update || echo "fips: apt-get update reported errors (above); going on with what arrived" >&2

cd "$work/src"
# The newest source of the 3.0 series that Debian serves (the FIPS provider of 3.0 runs under
# any 3.0.x libcrypto). A mirror may list a version whose files it no longer has: try each, and
# fall back to the upstream tarball (the .orig.tar.gz) when only that arrived.
vers=$(apt-cache "${aptopts[@]}" showsrc openssl | awk '/^Version: 3\.0\./ {print $2}' | sort -Vru)
[ -n "$vers" ] || { echo "fips: Debian offers no openssl 3.0 source package" >&2; exit 1; }
for ver in $vers; do
  echo "fips: fetching the source of openssl $ver"
  apt-get "${aptopts[@]}" source -qq "openssl=$ver" >"$work/source.log" 2>&1 && break
  orig=$(ls openssl_3.0.*.orig.tar.gz 2>/dev/null | head -n 1)
  if [ -n "$orig" ]; then tar xzf "$orig"; break; fi
  tail -n 5 "$work/source.log" >&2
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
