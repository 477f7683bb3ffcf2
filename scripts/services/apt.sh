# Sourced by the scripts under scripts/services/: installs Debian packages
# without prompts, refreshing the package lists only if the first try fails.
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "$@" >/dev/null ||
    { apt-get update >/dev/null && apt-get install -y --no-install-recommends "$@" >/dev/null; }
}
