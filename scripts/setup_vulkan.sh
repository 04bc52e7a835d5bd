#!/usr/bin/env bash
# Make SAPIEN 3 (ManiSkill3) able to render on this machine.
#
# SAPIEN 3 needs a Vulkan device with VK_KHR_external_semaphore_fd. On a machine without a GPU that is
# Mesa's lavapipe, which has the extension only from Mesa 24.3 on; Debian 12 ships 22.3.6 ("Failed to find
# a supported physical device"). This script, idempotently:
#   1. does nothing if a GPU driver's Vulkan ICD is installed (NVIDIA, or any non-lavapipe ICD json);
#   2. does nothing if mesa-vulkan-drivers >= 24.3 is already installed;
#   3. otherwise adds a bookworm-backports apt source DERIVED from the Debian mirror this machine already
#      uses (read from /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list; no host name is written
#      in this repository), and installs mesa-vulkan-drivers (with the libdrm it pulls) and libvulkan1
#      from bookworm-backports.
# Usage: bash scripts/setup_vulkan.sh        (root, or a user with sudo)
# Env:   VLA_RAZOR_FORCE_MESA=1 installs backports Mesa even where a GPU ICD is present.
set -euo pipefail

MIN_MESA="24.3"
BACKPORTS_LIST="/etc/apt/sources.list.d/vla-razor-bookworm-backports.list"
ICD_DIRS=(/usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d)

log() { echo "[setup_vulkan] $*"; }

if [[ "$(id -u)" -eq 0 ]]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  log "error: need root or sudo to install system packages; re-run as root." >&2
  exit 1
fi

# 1. A GPU driver's Vulkan is present: SAPIEN renders on it, nothing to do. Mesa's ICDs (lavapipe, and
#    radv/anv, which the mesa package installs whether or not such a GPU exists) load libvulkan_*.so; a
#    vendor driver (nvidia_icd.json -> libGLX_nvidia.so.0, AMDVLK -> amdvlk64.so) does not.
if [[ "${VLA_RAZOR_FORCE_MESA:-0}" != "1" ]]; then
  for dir in "${ICD_DIRS[@]}"; do
    for icd in "$dir"/*.json; do
      [[ -e "$icd" ]] || continue
      if ! grep -q '"library_path"[^,]*libvulkan_' "$icd"; then
        log "GPU Vulkan ICD found: $icd -> skipping (VLA_RAZOR_FORCE_MESA=1 installs Mesa anyway)"
        exit 0
      fi
    done
  done
fi

# 2. A new-enough mesa-vulkan-drivers is already installed.
installed="$(dpkg-query -W -f='${Status} ${Version}' mesa-vulkan-drivers 2>/dev/null || true)"
if [[ "$installed" == "install ok installed "* ]]; then
  version="${installed#install ok installed }"
  if dpkg --compare-versions "$version" ge "$MIN_MESA"; then
    log "mesa-vulkan-drivers $version >= $MIN_MESA already installed -> nothing to do"
    exit 0
  fi
  log "mesa-vulkan-drivers $version is older than $MIN_MESA -> upgrading from bookworm-backports"
else
  log "mesa-vulkan-drivers not installed -> installing from bookworm-backports"
fi

# 3. Derive the backports source from the configured Debian mirror.
. /etc/os-release
if [[ "${VERSION_CODENAME:-}" != "bookworm" ]]; then
  log "error: this script knows Debian 12 (bookworm); found '${VERSION_CODENAME:-unknown}'." >&2
  log "Install mesa-vulkan-drivers >= $MIN_MESA from your distribution by hand." >&2
  exit 1
fi

find_mirror() {
  # deb822 files: a stanza whose Suites contains "bookworm" (the main archive, not -security).
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -e "$f" ]] || continue
    awk '
      BEGIN { RS=""; FS="\n" }
      {
        uris=""; suites=""
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/)   { uris = $i;   sub(/^URIs:[ \t]*/, "", uris) }
          if ($i ~ /^Suites:/) { suites = $i; sub(/^Suites:[ \t]*/, "", suites) }
        }
        n = split(suites, s, /[ \t]+/)
        for (j = 1; j <= n; j++) if (s[j] == "bookworm") { split(uris, u, /[ \t]+/); print u[1]; exit }
      }' "$f"
  done
  # one-line format: "deb [opts] URI bookworm main ..."
  local lists=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list; do [[ -e "$f" ]] && lists+=("$f"); done
  for f in "${lists[@]}"; do
    [[ -e "$f" ]] || continue
    awk '$1 == "deb" {
           i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
           if ($(i+1) == "bookworm") { print $i; exit }
         }' "$f"
  done
}

if [[ -e "$BACKPORTS_LIST" ]]; then
  log "backports source already configured: $BACKPORTS_LIST"
else
  mirror="$(find_mirror | head -n 1)"
  if [[ -z "$mirror" ]]; then
    log "error: found no Debian 'bookworm' source in /etc/apt/sources.list{,.d/} to derive backports from." >&2
    exit 1
  fi
  log "adding bookworm-backports from the configured mirror $mirror -> $BACKPORTS_LIST"
  echo "deb $mirror bookworm-backports main" | "${SUDO[@]}" tee "$BACKPORTS_LIST" >/dev/null
fi

log "apt-get update"
"${SUDO[@]}" apt-get update -qq
log "installing mesa-vulkan-drivers libvulkan1 from bookworm-backports"
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
  -t bookworm-backports mesa-vulkan-drivers libvulkan1
log "installed: $(dpkg-query -W -f='mesa-vulkan-drivers ${Version}' mesa-vulkan-drivers)," \
    "$(dpkg-query -W -f='libvulkan1 ${Version}' libvulkan1)," \
    "$(dpkg-query -W -f='libdrm2 ${Version}' libdrm2)"
log "done; check with: python -c 'import sapien; print(sapien.render.get_device_summary())'"
