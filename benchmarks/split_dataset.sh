#!/usr/bin/env bash
# Carry a dataset tree to a machine without network in parts of at most 60 MiB.
#
#   benchmarks/split_dataset.sh split SRC_DIR PARTS_DIR [PART_SIZE]   # default PART_SIZE 60M (MiB)
#   benchmarks/split_dataset.sh join  PARTS_DIR DEST_DIR
#
# split: one reproducible tar of SRC_DIR (symlinks followed, names sorted, owners and times fixed),
# cut by GNU split into PARTS_DIR/<name>.tar.part-000, -001, ...; PARTS_DIR/<name>.tar.sha256 holds
# the checksum of the whole tar. join: concatenates the parts, checks that checksum, and only then
# unpacks into DEST_DIR/<name> (through a temporary directory, renamed at the end), so a missing or
# corrupt part leaves nothing behind. Errors are one line on stderr, exit status 1 (2 for usage).
set -euo pipefail

prog=$(basename "$0")
die() { echo "$prog: error: $*" >&2; exit 1; }
usage() { sed -n 4,5p "$0" | sed 's/^# *//' >&2; exit 2; }

split_tree() {
    local src=${1%/} parts=$2 size=${3:-60M}
    [[ -d $src ]] || die "$src: not a directory"
    local name; name=$(basename "$(cd "$src" && pwd)")
    mkdir -p "$parts"
    if compgen -G "$parts/$name.tar.part-*" > /dev/null; then
        die "$parts already holds parts of $name (remove them first)"
    fi
    local tmp="$parts/.$name.tar.part-tmp"
    rm -rf "$tmp"; mkdir "$tmp"
    # Reproducible tar: the same tree gives the same bytes, so the checksum identifies the data.
    tar -C "$(dirname "$(cd "$src" && pwd)")" --dereference --sort=name --mtime=@0 --owner=0 --group=0 \
        --numeric-owner -cf - "$name" \
        | tee >(sha256sum | cut -d' ' -f1 > "$tmp/sha256") \
        | split -b "$size" -d -a 3 - "$tmp/$name.tar.part-"
    wait  # for the checksum's process substitution
    [[ -s $tmp/sha256 ]] || die "could not checksum the tar of $src"
    echo "$(cat "$tmp/sha256")  $name.tar" > "$parts/$name.tar.sha256"
    mv "$tmp/$name".tar.part-* "$parts/"
    rm -rf "$tmp"
    local n; n=$(ls "$parts/$name".tar.part-* | wc -l)
    echo "$parts: $n parts of $name.tar (at most $size each), sha256 in $name.tar.sha256"
}

join_tree() {
    local parts=${1%/} dest=$2
    [[ -d $parts ]] || die "$parts: not a directory"
    local sums=("$parts"/*.tar.sha256)
    [[ -f ${sums[0]} ]] || die "$parts: no <name>.tar.sha256 (not made by '$prog split')"
    (( ${#sums[@]} == 1 )) || die "$parts: several .tar.sha256 files; keep one dataset per directory"
    local want tarname name
    read -r want tarname < "${sums[0]}"
    name=${tarname%.tar}
    compgen -G "$parts/$tarname.part-*" > /dev/null || die "$parts: no parts $tarname.part-*"
    [[ ! -e $dest/$name ]] || die "$dest/$name already exists"
    local got
    got=$(cat "$parts/$tarname".part-* | sha256sum | cut -d' ' -f1)
    [[ $got == "$want" ]] || die "$tarname: sha256 $got after joining, expected $want (a part is missing or corrupt)"
    mkdir -p "$dest"
    join_tmp=$(mktemp -d "$dest/.$name.join-XXXXXX")
    trap 'rm -rf "$join_tmp"' EXIT
    cat "$parts/$tarname".part-* | tar -C "$join_tmp" -xf - || die "$tarname: tar could not unpack it"
    mv "$join_tmp/$name" "$dest/$name"
    echo "$dest/$name: joined and unpacked, sha256 $got checked"
}

case ${1:-} in
    split) (( $# >= 3 && $# <= 4 )) || usage; split_tree "$2" "$3" "${4:-60M}" ;;
    join) (( $# == 3 )) || usage; join_tree "$2" "$3" ;;
    *) usage ;;
esac
