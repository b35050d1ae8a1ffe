#!/usr/bin/env bash
# Carry a dataset tree to a machine without network in parts of at most 60 MiB.
#
#   benchmarks/split_dataset.sh split SRC_DIR PARTS_DIR [PART_SIZE]   # default PART_SIZE 60M (MiB)
#   benchmarks/split_dataset.sh join  PARTS_DIR DEST_DIR
#
# split: one reproducible tar of SRC_DIR (symlinks followed, names sorted, owners and times fixed),
# gzip-compressed (no name or time stored: the same tree gives the same bytes; the tar's per-file
# headers and padding and the small JPEGs' repeated tables compress, so the real Tiny ImageNet tree
# of 332 MB as a tar travels as 166 MB: 3 parts instead of 6), cut by GNU split into
# PARTS_DIR/<name>.tar.gz.part-000, -001, ...; PARTS_DIR/<name>.tar.gz.sha256 holds the checksum
# of the whole stream. join: concatenates the parts, checks that checksum, and only then
# unpacks into DEST_DIR/<name> (through a temporary directory, renamed at the end; uncompressed
# <name>.tar parts of an earlier split are joined too), so a missing or
# corrupt part, or a disk that fills up, leaves nothing behind (nor does a failed split: no temporary
# part). Errors are one line on stderr naming the output and the cause, exit status 1 (2 for usage).
set -euo pipefail

prog=$(basename "$0")
die() { echo "$prog: error: $*" >&2; exit 1; }
usage() { sed -n 4,5p "$0" | sed 's/^# *//' >&2; exit 2; }
usage_error() { echo "$prog: error: $*" >&2; exit 2; }
# The cause in a tool's error output (files in turn): the reason after the last ": " of its first
# "Cannot ...: reason" line (tar), else of its first line ("split: FILE: reason").
cause() {
    local f line
    for f; do
        line=$(grep -m1 -E 'Cannot [a-z]+: ' "$f" 2> /dev/null || grep -m1 . "$f" 2> /dev/null) || continue
        echo "${line##*: }"; return
    done
    echo "unknown error"
}

split_tree() {
    local src=${1%/} parts=$2 size=${3-60M}
    [[ $size =~ ^[1-9][0-9]*([KMGT](iB|B)?)?$ ]] \
        || usage_error "PART_SIZE '$size': not a size (bytes, or a number with K, M, G or T: 60M is 60 MiB)"
    [[ -d $src ]] || die "$src: not a directory"
    local name; name=$(basename "$(cd "$src" && pwd)")
    if compgen -G "$parts/$name.tar.part-*" > /dev/null || compgen -G "$parts/$name.tar.gz.part-*" > /dev/null; then
        die "$parts already holds parts of $name (remove them first)"
    fi
    # On failure the temporary parts go, and PARTS_DIR too when this split made it.
    made_parts=; [[ -d $parts ]] || made_parts=$parts
    tmp="$parts/.$name.tar.gz.part-tmp"
    trap 'rm -rf "$tmp"; [[ -z $made_parts ]] || rmdir "$made_parts" 2> /dev/null || true' EXIT
    mkdir -p "$parts" 2> /dev/null || die "$parts: cannot create the folder"
    rm -rf "$tmp"; mkdir "$tmp"
    # Reproducible tar: the same tree gives the same bytes, so the checksum identifies the data.
    tar -C "$(dirname "$(cd "$src" && pwd)")" --dereference --sort=name --mtime=@0 --owner=0 --group=0 \
        --numeric-owner -cf - "$name" 2> "$tmp/tar.err" \
        | gzip -n -6 2> "$tmp/gzip.err" \
        | tee >(sha256sum | cut -d' ' -f1 > "$tmp/sha256") \
        | split -b "$size" -d -a 3 - "$tmp/$name.tar.gz.part-" 2> "$tmp/split.err" \
        || die "$parts: could not write the parts of $name.tar.gz: $(cause "$tmp"/split.err "$tmp"/gzip.err "$tmp"/tar.err)"
    wait  # for the checksum's process substitution
    [[ -s $tmp/sha256 ]] || die "could not checksum the tar of $src"
    echo "$(cat "$tmp/sha256")  $name.tar.gz" > "$tmp/$name.tar.gz.sha256" 2> /dev/null \
        || die "$parts: could not write $name.tar.gz.sha256"
    mv "$tmp/$name".tar.gz.part-* "$parts/" && mv "$tmp/$name.tar.gz.sha256" "$parts/" \
        || die "$parts: could not move the parts of $name.tar.gz into place"
    made_parts=
    local n; n=$(ls "$parts/$name".tar.gz.part-* | wc -l)
    echo "$parts: $n parts of $name.tar.gz (at most $size each), sha256 in $name.tar.gz.sha256"
}

join_tree() {
    local parts=${1%/} dest=$2
    [[ -d $parts ]] || die "$parts: not a directory"
    local sums=() f
    for f in "$parts"/*.tar.sha256 "$parts"/*.tar.gz.sha256; do [[ -f $f ]] && sums+=("$f"); done
    (( ${#sums[@]} > 0 )) || die "$parts: no <name>.tar.gz.sha256 (not made by '$prog split')"
    (( ${#sums[@]} == 1 )) || die "$parts: several .sha256 files; keep one dataset per directory"
    local want tarname name unzip=
    read -r want tarname < "${sums[0]}"
    case $tarname in
        *.tar.gz) name=${tarname%.tar.gz}; unzip=-z ;;
        *.tar) name=${tarname%.tar} ;;
        *) die "${sums[0]}: names '$tarname', neither a .tar nor a .tar.gz" ;;
    esac
    compgen -G "$parts/$tarname.part-*" > /dev/null || die "$parts: no parts $tarname.part-*"
    [[ ! -e $dest/$name ]] || die "$dest/$name already exists"
    local got
    got=$(cat "$parts/$tarname".part-* | sha256sum | cut -d' ' -f1)
    [[ $got == "$want" ]] || die "$tarname: sha256 $got after joining, expected $want (a part is missing or corrupt)"
    made_dest=; [[ -d $dest ]] || made_dest=$dest
    mkdir -p "$dest" 2> /dev/null || die "$dest: cannot create the folder"
    # On failure the partial tree goes, and DEST too when this join made it.
    join_tmp= join_err=
    trap 'rm -rf "$join_tmp" "$join_err"; [[ -z $made_dest ]] || rmdir "$made_dest" 2> /dev/null || true' EXIT
    join_tmp=$(mktemp -d "$dest/.$name.join-XXXXXX" 2> /dev/null) || die "$dest: cannot write there"
    join_err=$(mktemp)
    cat "$parts/$tarname".part-* | tar -C "$join_tmp" ${unzip:+"$unzip"} -xf - 2> "$join_err" \
        || die "$dest/$name: could not unpack $tarname: $(cause "$join_err") (nothing kept)"
    mv "$join_tmp/$name" "$dest/$name" || die "$dest/$name: could not move the unpacked tree into place"
    made_dest=
    echo "$dest/$name: joined and unpacked, sha256 $got checked"
}

case ${1:-} in
    split) (( $# >= 3 && $# <= 4 )) || usage; split_tree "$2" "$3" "${4-60M}" ;;
    join) (( $# == 3 )) || usage; join_tree "$2" "$3" ;;
    *) usage ;;
esac
