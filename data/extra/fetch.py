#!/usr/bin/env python3
"""Rebuild the extra photo set from Debian packages.

Usage: python data/extra/fetch.py OUT_DIR

For every package named in MANIFEST.csv (next to this script) the script runs
``apt-get download PKG=VERSION`` in a temporary folder (falling back, with a
warning, to ``apt-get download PKG`` when that exact version is no longer
available), unpacks it with ``dpkg-deb -x``, checks the sha256 of every listed
file, converts it to RGB, downscales it so that the long side is at most
1024 px (Lanczos) and writes OUT_DIR/<file> as JPEG quality 92. It also copies
each package's copyright file to OUT_DIR/copyright/<package>.copyright and
writes OUT_DIR/MANIFEST.csv (the manifest columns plus width,height).

Idempotent: an output that already exists and decodes to the expected size is
kept (its source is still checked). Needs python3 with Pillow and numpy, and
the Debian tools apt-get and dpkg-deb.
"""
import csv
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image, ImageOps

Image.MAX_IMAGE_PIXELS = None  # some wallpapers are > 20 MP

HERE = os.path.dirname(os.path.abspath(__file__))
MANIFEST = os.path.join(HERE, "MANIFEST.csv")
COLUMNS = ["file", "package", "version", "source_path", "sha256", "licence", "series"]
MAX_SIDE = 1024
QUALITY = 92

# Packages whose /usr/share/doc/PKG is a symlink into another package: the
# copyright file is taken from that package instead (same source, same version).
COPYRIGHT_FROM = {"gimp-help-en": "gimp-help-common"}

# KPhotoAlbum's demo album keeps the orientation of these files in
# usr/share/kphotoalbum/demo/index.xml (attribute angle=, clockwise degrees),
# not in EXIF; apply it so that the photos are upright.
ROTATE_CW = {
    "kphotoalbum-new_wave_1.jpg": 90,
    "kphotoalbum-grand_canyon_1.jpg": 180,
    "kphotoalbum-wayne.jpg": 90,
    "kphotoalbum-pool_2.jpg": 270,
}


def warn(msg):
    print(f"  WARNING: {msg}", file=sys.stderr)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(pkg, version, dest):
    """Download PKG=VERSION into dest; return the .deb path (or None)."""
    for spec, is_fallback in ((f"{pkg}={version}", False), (pkg, True)):
        if is_fallback:
            warn(f"{pkg}={version} is not available; falling back to the current version of {pkg} "
                 "(files whose sha256 changed will be skipped)")
        before = set(os.listdir(dest))
        r = subprocess.run(["apt-get", "download", spec], cwd=dest,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        new = [f for f in set(os.listdir(dest)) - before if f.endswith(".deb")]
        if r.returncode == 0 and new:
            return os.path.join(dest, new[0])
        if is_fallback:
            warn(f"apt-get download {pkg} failed: {r.stderr.strip().splitlines()[-1:] or r.returncode}")
    return None


def deb_version(deb):
    return subprocess.run(["dpkg-deb", "-f", deb, "Version"], stdout=subprocess.PIPE,
                          text=True, check=True).stdout.strip()


def convert(src, name):
    im = Image.open(src)
    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    im = im.convert("RGB")
    angle = ROTATE_CW.get(name, 0)
    if angle:
        im = im.rotate(-angle, expand=True)
    w, h = im.size
    scale = MAX_SIDE / max(w, h)
    if scale < 1:
        im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)
    arr = np.asarray(im)
    assert arr.ndim == 3 and arr.shape[2] == 3
    return im


def expected_size(src, name):
    im = Image.open(src)
    w, h = im.size
    o = im.getexif().get(0x0112, 1)
    if o in (5, 6, 7, 8):
        w, h = h, w
    if ROTATE_CW.get(name, 0) in (90, 270):
        w, h = h, w
    scale = MAX_SIDE / max(w, h)
    if scale < 1:
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
    return w, h


def existing_ok(path, size):
    try:
        with Image.open(path) as im:
            return im.format == "JPEG" and im.mode == "RGB" and im.size == tuple(size)
    except Exception:
        return False


def main(argv):
    if len(argv) != 2:
        print("usage: python data/extra/fetch.py OUT_DIR", file=sys.stderr)
        return 1
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            print(f"fetch.py: '{tool}' not found; this script needs a Debian system with apt-get and dpkg-deb",
                  file=sys.stderr)
            return 2
    out = os.path.abspath(argv[1])
    os.makedirs(os.path.join(out, "copyright"), exist_ok=True)
    t0 = time.time()

    with open(MANIFEST, newline="") as fh:
        rows = list(csv.DictReader(fh))
    packages = {}
    for row in rows:
        packages.setdefault(row["package"], []).append(row)

    done_rows, n_new, n_kept, n_skip = [], 0, 0, 0
    for pkg, prow in packages.items():
        version = prow[0]["version"]
        with tempfile.TemporaryDirectory(prefix="extra-") as tmp:
            deb = download(pkg, version, tmp)
            if deb is None:
                warn(f"{pkg}: download failed, {len(prow)} file(s) skipped")
                print(f"{pkg} {version}: FAILED (0/{len(prow)})")
                n_skip += len(prow)
                continue
            got_version = deb_version(deb)
            root = os.path.join(tmp, "root")
            subprocess.run(["dpkg-deb", "-x", deb, root], check=True)

            # copyright file
            cpkg = COPYRIGHT_FROM.get(pkg, pkg)
            cfile = os.path.join(root, "usr/share/doc", cpkg, "copyright")
            if cpkg != pkg:
                cdeb = download(cpkg, got_version, tmp)
                if cdeb:
                    croot = os.path.join(tmp, "croot")
                    subprocess.run(["dpkg-deb", "-x", cdeb, croot], check=True)
                    cfile = os.path.join(croot, "usr/share/doc", cpkg, "copyright")
            if os.path.isfile(cfile):
                shutil.copyfile(cfile, os.path.join(out, "copyright", f"{pkg}.copyright"))
            else:
                warn(f"{pkg}: no copyright file found at usr/share/doc/{cpkg}/copyright")

            ok = 0
            for row in prow:
                src = os.path.join(root, row["source_path"])
                if not os.path.isfile(src):
                    warn(f"{pkg}: {row['source_path']} missing in {got_version}; skipped")
                    n_skip += 1
                    continue
                if sha256(src) != row["sha256"]:
                    warn(f"{pkg}: sha256 mismatch for {row['source_path']}; skipped")
                    n_skip += 1
                    continue
                dst = os.path.join(out, row["file"])
                size = expected_size(src, row["file"])
                if existing_ok(dst, size):
                    n_kept += 1
                else:
                    im = convert(src, row["file"])
                    size = im.size
                    tmpname = dst + ".part"
                    im.save(tmpname, "JPEG", quality=QUALITY)
                    os.replace(tmpname, dst)
                    n_new += 1
                ok += 1
                done_rows.append({**row, "width": size[0], "height": size[1]})
            note = "" if got_version == version else f" (got {got_version}!)"
            print(f"{pkg} {version}{note}: {ok}/{len(prow)} photos")

    tmpman = os.path.join(out, "MANIFEST.csv.part")
    with open(tmpman, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS + ["width", "height"], lineterminator="\n")
        w.writeheader()
        w.writerows(done_rows)
    os.replace(tmpman, os.path.join(out, "MANIFEST.csv"))
    print(f"summary: {len(done_rows)}/{len(rows)} photos in {out} "
          f"({n_new} written, {n_kept} already present, {n_skip} skipped) in {time.time() - t0:.1f} s")
    return 0 if n_skip == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
