# Shared by the scripts that make sure a tool is there (source it, don't run it).

# apt_install WHO PACKAGE...: install Debian packages when we are root and have
# apt-get; otherwise say what to install and fail (return 1).
apt_install() {
  local who="$1"
  shift
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "$who: please install: $*" >&2
    return 1
  fi
  echo "$who: installing $* from Debian's packages" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
