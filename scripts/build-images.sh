#!/usr/bin/env bash
# Builds the two images Skiff needs on a node without touching any registry:
#
#   pause.tar    skiff.local/pause:3.10    the sandbox ("pause") image: waits forever,
#                                          exits 0 on SIGTERM/SIGINT
#   busybox.tar  skiff.local/busybox:1.35  busybox-static with every applet linked,
#                                          /etc/passwd and /etc/group, /tmp; cmd `sh`
#
# Both are OCI archives made from Debian's busybox-static with umoci and skopeo;
# import them with `ctr -n k8s.io images import --all-platforms FILE`.
#
# Usage: scripts/build-images.sh [OUT_DIR]   (default: target/images)
#
# Re-running is cheap: archives newer than the busybox binary and this script are kept.
set -euo pipefail

BUSYBOX=${BUSYBOX:-/bin/busybox}
PAUSE_IMAGE=skiff.local/pause:3.10
BUSYBOX_IMAGE=skiff.local/busybox:1.35

root_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out_dir=${1:-$root_dir/target/images}
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)

for tool in umoci skopeo; do
    command -v "$tool" >/dev/null || { echo "build-images: $tool is not installed (apt-get install $tool)" >&2; exit 1; }
done
[ -x "$BUSYBOX" ] || { echo "build-images: $BUSYBOX is missing (apt-get install busybox-static)" >&2; exit 1; }
"$BUSYBOX" true || { echo "build-images: $BUSYBOX does not run" >&2; exit 1; }

up_to_date() {
    local archive=$1
    [ -s "$archive" ] && [ "$archive" -nt "$BUSYBOX" ] && [ "$archive" -nt "${BASH_SOURCE[0]}" ]
}

work=$(mktemp -d "${TMPDIR:-/tmp}/skiff-images.XXXXXX")
trap 'rm -rf "$work"' EXIT

# new_image TAG: an empty image in the work layout, unpacked into $work/TAG.
new_image() {
    local tag=$1
    [ -d "$work/oci" ] || umoci init --layout "$work/oci"
    umoci new --image "$work/oci:$tag"
    umoci unpack --image "$work/oci:$tag" "$work/$tag" >/dev/null
}

# finish_image TAG NAME ARCHIVE CONFIG_ARGS...: repack, configure, export.
finish_image() {
    local tag=$1 name=$2 archive=$3
    shift 3
    umoci repack --image "$work/oci:$tag" "$work/$tag" >/dev/null
    umoci config --image "$work/oci:$tag" \
        --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --config.workingdir / \
        "$@"
    rm -f "$archive.tmp"
    skopeo copy --quiet "oci:$work/oci:$tag" "oci-archive:$archive.tmp:$name"
    mv -f "$archive.tmp" "$archive"
    echo "built $name -> $archive ($(du -h "$archive" | cut -f1))"
}

pause_archive=$out_dir/pause.tar
if up_to_date "$pause_archive"; then
    echo "up to date: $PAUSE_IMAGE -> $pause_archive"
else
    new_image pause
    rootfs=$work/pause/rootfs
    mkdir -p "$rootfs/bin"
    install -m 0755 "$BUSYBOX" "$rootfs/bin/busybox"
    ln -s busybox "$rootfs/bin/sh"
    # PID 1 ignores signals it has no handler for, so the traps are what make the
    # sandbox stop at once; `wait` returns as soon as a trapped signal arrives.
    finish_image pause "$PAUSE_IMAGE" "$pause_archive" \
        --config.entrypoint /bin/busybox \
        --config.entrypoint sh \
        --config.entrypoint -c \
        --config.entrypoint 'trap "exit 0" TERM INT; while :; do sleep 86400 & wait $!; done'
fi

busybox_archive=$out_dir/busybox.tar
if up_to_date "$busybox_archive"; then
    echo "up to date: $BUSYBOX_IMAGE -> $busybox_archive"
else
    new_image busybox
    rootfs=$work/busybox/rootfs
    mkdir -p "$rootfs/bin" "$rootfs/sbin" "$rootfs/usr/bin" "$rootfs/usr/sbin" \
        "$rootfs/etc" "$rootfs/root" "$rootfs/home" "$rootfs/var/www"
    install -d -m 1777 "$rootfs/tmp"
    install -m 0755 "$BUSYBOX" "$rootfs/bin/busybox"
    # Every applet at the path busybox itself would install it to.
    "$BUSYBOX" --list-full | while read -r applet; do
        [ "$applet" = bin/busybox ] && continue
        mkdir -p "$rootfs/$(dirname "$applet")"
        ln -sf /bin/busybox "$rootfs/$applet"
    done
    cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/home:/bin/false
EOF
    cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
nobody:x:65534:
EOF
    finish_image busybox "$BUSYBOX_IMAGE" "$busybox_archive" --config.cmd sh
fi
