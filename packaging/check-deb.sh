#!/usr/bin/env bash
# Checks the Debian package end to end; `.ci/test` runs it after the cargo tests.
#
#   bash packaging/check-deb.sh             # builds the release binary first
#   bash packaging/check-deb.sh --no-build  # packages target/release/contentdist as is
#
# 1. builds the .deb (packaging/build-deb.sh);
# 2. lintian: any error or warning fails, except those the package overrides
#    (packaging/debian/lintian-overrides, each with its reason);
# 3. installs it on THIS machine with dpkg -i, as root, and checks what it installed:
#    the files, the conffile, the group, the enabled unit, the manual page (man
#    renders it), the completions, `contentdist --version`, `dpkg --verify`, and
#    that an edited conffile survives a reinstall;
# 4. purges it and checks that purge removed the cache and the settings file.
#
# Installing on the machine itself is the honest test of the maintainer scripts
# (addgroup, deb-systemd-helper), which a `dpkg --root` throwaway root cannot run
# without a whole Debian system inside it. Nothing is started: a policy-rc.d that
# exits 101 forbids it (as in .ci/run), and without a running systemd the postinst
# starts nothing anyway. The script refuses to run where a contentdist is already
# installed or its directories exist, so that its purge cannot delete real data;
# under CI (CI=true) a package left by an interrupted earlier run is purged first.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
step() { printf -- '--- %s (t=%ss)\n' "$*" "$((SECONDS - started))"; }
fail() {
    echo "check-deb: FAILED: $*" >&2
    exit 1
}

if [ "$(id -u)" -ne 0 ]; then
    echo "check-deb: installs the package to check it: run as root (CI does)" >&2
    exit 1
fi

# ---------------------------------------------------------------- refuse to clobber
if dpkg-query -W -f='${Status}' contentdist 2>/dev/null | grep -q 'installed'; then
    if [ "${CI:-}" = true ]; then
        echo "a contentdist package is installed (left by an interrupted run): purging it"
        dpkg --purge contentdist
    else
        fail "the contentdist package is installed here; this check would purge it (and its cache): dpkg --purge contentdist first, or run it on a throwaway machine"
    fi
fi
for path in /usr/bin/contentdist /etc/contentdist /var/cache/contentdist /var/lib/contentdist; do
    [ ! -e "$path" ] || fail "$path exists but not from the package; this check installs and purges contentdist: move it away first"
done

# ---------------------------------------------------------------- build
step "build the package"
deb=$(bash packaging/build-deb.sh "$@" | tail -n 1)
[ -f "$deb" ] || fail "build-deb.sh printed no package: $deb"
echo "$deb"

# ---------------------------------------------------------------- lintian
step "lintian"
if ! command -v lintian >/dev/null 2>&1; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends lintian
fi
# Infos, experimental and pedantic tags are shown, not fatal. "running with root
# privileges is not recommended" is lintian's note about being root.
lintian_rc=0
lintian --pedantic --display-info --display-experimental --fail-on error,warning "$deb" \
    2> >(grep -v '^running with root privileges' >&2) || lintian_rc=$?
[ "$lintian_rc" -eq 0 ] ||
    fail "lintian found an error or a warning the package does not override (above)"

# ---------------------------------------------------------------- what the .deb holds
step "contents and control"
expected_files=(
    /usr/bin/contentdist
    /usr/lib/systemd/system/contentdist.service
    /etc/contentdist/contentdist.toml
    /usr/share/man/man1/contentdist.1.gz
    /usr/share/man/man1/contentdist-get.1.gz
    /usr/share/man/man1/contentdist-jobs-watch.1.gz
    /usr/share/bash-completion/completions/contentdist
    /usr/share/zsh/vendor-completions/_contentdist
    /usr/share/fish/vendor_completions.d/contentdist.fish
    /usr/share/doc/contentdist/copyright
    /usr/share/doc/contentdist/changelog.Debian.gz
)
contents=$(dpkg-deb --contents "$deb")
for f in "${expected_files[@]}"; do
    grep -q " \.$f\$" <<<"$contents" || fail "$f is not in the package"
done
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -qx /etc/contentdist/contentdist.toml ||
    fail "/etc/contentdist/contentdist.toml is not a conffile"
# The unit is the repository's, byte for byte.
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/lib/systemd/system/contentdist.service |
    cmp -s - packaging/contentdist.service || fail "the packaged unit differs from packaging/contentdist.service"
# The changelog's newest entry is this version: a version bump needs an entry.
version=$(dpkg-deb --field "$deb" Version)
head -n 1 packaging/debian/changelog | grep -qF "contentdist ($version)" ||
    fail "packaging/debian/changelog's first entry is not ($version): add one"

# ---------------------------------------------------------------- install
step "dpkg -i"
group_existed=false
getent group contentdist >/dev/null && group_existed=true
policy=/usr/sbin/policy-rc.d
remove_policy=false
installed=false
cleanup() {
    if [ "$installed" = true ]; then
        dpkg --purge contentdist >/dev/null 2>&1 || true
    fi
    if [ "$group_existed" = false ] && getent group contentdist >/dev/null; then
        delgroup --system --quiet contentdist || true
    fi
    if [ "$remove_policy" = true ]; then
        rm -f "$policy"
    fi
}
trap cleanup EXIT
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    remove_policy=true
fi
installed=true
DEBIAN_FRONTEND=noninteractive dpkg -i "$deb"

step "installed files"
listed=$(dpkg -L contentdist)
for f in "${expected_files[@]}"; do
    grep -qx "$f" <<<"$listed" || fail "dpkg -L does not list $f"
    [ -f "$f" ] || fail "$f is listed but not on disk (a dpkg path-exclude in /etc/dpkg/dpkg.cfg.d?)"
done
dpkg-query -W -f='${Conffiles}\n' contentdist | grep -q '^ /etc/contentdist/contentdist.toml ' ||
    fail "dpkg-query does not show /etc/contentdist/contentdist.toml as a conffile"
cmp -s /etc/contentdist/contentdist.toml contentdist.example.toml ||
    fail "/etc/contentdist/contentdist.toml is not contentdist.example.toml"
dpkg --verify contentdist || fail "dpkg --verify: an installed file differs from the package"

step "maintainer scripts: group, unit enabled"
getent group contentdist >/dev/null || fail "postinst did not create the contentdist group"
[ -L /etc/systemd/system/multi-user.target.wants/contentdist.service ] ||
    fail "postinst did not enable contentdist.service (multi-user.target.wants)"

step "the installed binary"
installed_version=$(/usr/bin/contentdist --version)
echo "$installed_version"
built_version=$("${CARGO_TARGET_DIR:-target}/release/contentdist" --version)
[ "$installed_version" = "$built_version" ] ||
    fail "installed '$installed_version', built '$built_version'"
grep -q "^contentdist ${version%-*} (" <<<"$installed_version" ||
    fail "--version does not name release ${version%-*}"
# The shipped settings file is one the binary accepts.
/usr/bin/contentdist config show --config /etc/contentdist/contentdist.toml >/dev/null ||
    fail "contentdist config show rejects the installed /etc/contentdist/contentdist.toml"

step "manual pages"
page=$(man -w contentdist) || fail "man does not find contentdist(1)"
[ "$page" = /usr/share/man/man1/contentdist.1.gz ] || fail "man -w contentdist: $page"
rendered=$(MANWIDTH=80 man -P cat contentdist 2>&1) || fail "man contentdist: $rendered"
for text in NAME SYNOPSIS contentdist-get "Exit status" VERSION; do
    grep -q "$text" <<<"$rendered" || fail "man contentdist has no '$text'"
done
MANWIDTH=80 man -P cat contentdist-jobs-watch | grep -q 'contentdist-jobs-watch' ||
    fail "man contentdist-jobs-watch"
# Warnings from groff (bad requests, unknown escapes) in any page.
for p in /usr/share/man/man1/contentdist*.1.gz; do
    warnings=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$p" 2>&1 >/dev/null)
    [ -z "$warnings" ] || fail "groff warns on $p: $warnings"
done

step "completions"
bash -n /usr/share/bash-completion/completions/contentdist
# Loaded as bash-completion would, it completes the subcommands.
words=$(bash -c '
    source /usr/share/bash-completion/completions/contentdist
    COMP_WORDS=(contentdist jo); COMP_CWORD=1; COMP_LINE="contentdist jo"; COMP_POINT=14
    _contentdist contentdist jo contentdist
    echo "${COMPREPLY[*]}"')
[ "$words" = jobs ] || fail "bash completion of 'contentdist jo' gave '$words'"
grep -q '^#compdef contentdist' /usr/share/zsh/vendor-completions/_contentdist ||
    fail "the zsh completion has no #compdef line"
grep -q '^complete -c contentdist' /usr/share/fish/vendor_completions.d/contentdist.fish ||
    fail "the fish completion has no 'complete -c contentdist'"
for shell in zsh fish; do
    if command -v "$shell" >/dev/null 2>&1; then
        case $shell in
            zsh) zsh -n /usr/share/zsh/vendor-completions/_contentdist ;;
            fish) fish --no-execute /usr/share/fish/vendor_completions.d/contentdist.fish ;;
        esac
    fi
done

step "reinstall keeps an edited conffile"
echo '# edited by check-deb.sh' >>/etc/contentdist/contentdist.toml
DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold "$deb" >/dev/null
grep -q '^# edited by check-deb.sh' /etc/contentdist/contentdist.toml ||
    fail "reinstalling overwrote the edited /etc/contentdist/contentdist.toml"

step "purge"
# What the agent would have written: its cache (jobs, self-signed certificate).
mkdir -p /var/cache/contentdist/content /var/cache/contentdist/tls
dpkg --purge contentdist
installed=false
for path in /usr/bin/contentdist /etc/contentdist/contentdist.toml /var/cache/contentdist \
    /var/lib/contentdist /etc/systemd/system/multi-user.target.wants/contentdist.service; do
    [ ! -e "$path" ] || fail "$path is still there after dpkg --purge"
done

step "package checked"
