# Shared by the guest image builds (sourced; set SCRIPT to the caller's name first): messages and the
# check for a command with the Debian package that provides it.
die() {
	echo "$SCRIPT: error: $*" >&2
	exit 1
}
log() { echo "$SCRIPT: $*" >&2; }
need_cmd() {
	command -v "$1" >/dev/null 2>&1 || die "'$1' not found: install the Debian package '$2' (apt-get install $2)"
}
