"""Photo files in and out: PNG, JPEG, TIFF and WebP, 8 and 16 bit, EXIF and ICC kept.

Pillow reads everything (pixels, EXIF, ICC profile) except 16-bit colour, which it would read
as 8 bit: 16-bit RGB TIFF is decoded with tifffile (or OpenCV when the compression needs the
imagecodecs package), 16-bit RGB PNG with OpenCV.
Writing uses Pillow for 8 bit (it embeds EXIF and ICC in every format), OpenCV plus hand-written
iCCP/eXIf chunks for 16-bit PNG, and tifffile for 16-bit TIFF.

Orientation: pixels are kept as stored and the EXIF orientation tag is carried over unchanged,
so a viewer rotates the colour output exactly as it rotated the original.

Writes are atomic: a temporary file in the destination folder, renamed over the final name only
when complete. Whether an existing output may be replaced is the caller's decision.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from restorer.errors import InputError, OutputError

log = logging.getLogger(__name__)

# Archive scans are local files the user chose, and large-format scans pass Pillow's
# 89-megapixel "decompression bomb" guard: read them like any other photo.
Image.MAX_IMAGE_PIXELS = None

FORMATS_BY_SUFFIX = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
                     ".webp": "WEBP"}
IMAGE_SUFFIXES = frozenset(FORMATS_BY_SUFFIX)  # what restorer reads and writes as photos
_MAX_DEPTH = {"PNG": 16, "TIFF": 16, "JPEG": 8, "WEBP": 8}
_EXIF_HEADER = b"Exif\x00\x00"
# TIFF tags that describe the picture rather than its storage: carried from a TIFF's IFD0.
_DESCRIPTIVE_TIFF_TAGS = (270, 271, 272, 274, 305, 306, 315, 33432)
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_CHROMA_TOLERANCE = 3.0 / 255.0  # Pb/Pr magnitude below this is noise, not colour
_TONED_CONCENTRATION = 0.9  # hue concentration above this: one tint (sepia), not colour


@dataclass
class Photo:
    """A decoded photo.

    Attributes:
        luma: (H, W) float32 in [0, 1], the BT.601 Y' of the stored values, pixels as stored.
        bit_depth: 8 or 16, the stored sample depth.
        is_color: the picture holds colour: chroma beyond a small tolerance in more than one hue.
        is_toned: chroma of a single hue only, as in a sepia or cyanotype print (not is_color).
        exif: the raw EXIF block (starting with b"Exif\\0\\0"), or None.
        icc: the embedded ICC profile, or None.
        format: "PNG", "JPEG", "TIFF" or "WEBP".
        mode: Pillow's mode for the file ("L", "RGB", "I;16", "RGBA", ...).
        orientation: the EXIF orientation (1 to 8; 1 when absent), *not* applied to the pixels.
        alpha: (H, W) float32 in [0, 1] when the file has an alpha channel, else None.
    """

    luma: np.ndarray
    bit_depth: int
    is_color: bool
    is_toned: bool
    exif: bytes | None
    icc: bytes | None
    format: str
    mode: str
    orientation: int = 1
    alpha: np.ndarray | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.luma.shape[0], self.luma.shape[1]


# --- reading ------------------------------------------------------------------------------------

def read_image(path: str | Path) -> Photo:
    """Read a PNG, JPEG, TIFF or WebP photo (8 or 16 bit; gray, RGB, palette, with or without alpha).

    Raises:
        InputError: the file is missing, not an image, corrupt, or in an unsupported format or
            sample type; the message is one line naming the file.
    """
    path = Path(path)
    data = _read_bytes(path)
    meta, pixels = _decode(path, data)
    depth = 16 if pixels.dtype == np.uint16 else 8
    rgb, alpha = _split_channels(pixels.astype(np.float32) / np.float32(2 ** depth - 1))
    is_color, is_toned = _chroma_kind(rgb)
    luma = rgb if rgb.ndim == 2 else (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2])
    return Photo(luma=luma.astype(np.float32), bit_depth=depth, is_color=is_color, is_toned=is_toned,
                 alpha=alpha, **meta)


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise InputError("file not found", path=path, hint="check the path")
    if path.is_dir():
        raise InputError("is a folder, not an image", path=path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror or err}", path=path,
                         hint="check the file's permissions") from None
    if not data:
        raise empty_photo(path)
    return data


def empty_photo(path: Path) -> InputError:
    """The error for a zero-byte photo (an interrupted copy or download)."""
    return InputError("is empty (0 bytes)", path=path,
                      hint="copy the photo again: an interrupted copy or download leaves an empty file")


def _decode(path: Path, data: bytes) -> tuple[dict, np.ndarray]:
    """(metadata, pixels as uint8/uint16 gray (H, W), gray+alpha (H, W, 2), RGB or RGBA)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            meta = _metadata(path, im)
            if _is_deep_rgb(im, data):
                return meta, _decode_deep_rgb(path, data, meta["format"], meta["orientation"],
                                              _stored_size(im))
            pixels = _pillow_pixels(path, im)
            if meta["exif"] is None and im.info.get("exif"):  # a PNG's eXIf after its IDAT
                meta["exif"] = _raw_exif(im.info["exif"])
                meta["orientation"] = _orientation(im.getexif())
            if im.format == "TIFF" and meta["orientation"] != 1 and 274 not in im.tag_v2:
                pixels = _undo_orientation(pixels, meta["orientation"])  # Pillow rotated on load
            return meta, pixels
    except UnidentifiedImageError:
        raise InputError("not an image, or in a format that is not supported", path=path,
                         hint="restorer reads PNG, TIFF, JPEG and WebP") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise InputError(f"the image is corrupt or truncated ({err})", path=path,
                         hint="open it in an image viewer; re-export or re-scan it") from None


def _metadata(path: Path, im: Image.Image) -> dict:
    fmt = im.format
    if fmt not in _MAX_DEPTH:
        raise InputError(f"{fmt} images are not supported", path=path,
                         hint="convert it to PNG, TIFF, JPEG or WebP")
    exif = im.getexif()
    return {"format": fmt, "mode": im.mode, "icc": im.info.get("icc_profile") or None,
            "exif": _tiff_exif(exif) if fmt == "TIFF" else _raw_exif(im.info.get("exif")),
            "orientation": _orientation(exif)}


def _orientation(exif: Image.Exif) -> int:
    value = exif.get(274, 1)
    return value if value in range(1, 9) else 1


def _is_deep_rgb(im: Image.Image, data: bytes) -> bool:
    """16-bit colour, which Pillow would silently read as 8 bit."""
    if im.format == "PNG":
        return data[24] == 16 and data[25] in (2, 4, 6)  # IHDR bit depth; colour type RGB, GA, RGBA
    if im.format == "TIFF":
        bits = im.tag_v2.get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        return len(bits) >= 3 and max(bits) == 16
    return False


def _stored_size(im: Image.Image) -> tuple[int, int]:
    """(width, height) as stored; Pillow reports a TIFF's size after its orientation."""
    if im.format == "TIFF":
        return int(im.tag_v2[256]), int(im.tag_v2[257])
    return im.size


def _pillow_pixels(path: Path, im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16)
    if mode == "I":
        pixels = np.asarray(im)
        if pixels.min() < 0 or pixels.max() > 65535:
            raise InputError("32-bit integer samples are not supported", path=path,
                             hint="convert it to 8- or 16-bit")
        return pixels.astype(np.uint16)
    if mode == "F":
        raise InputError("floating-point samples are not supported", path=path,
                         hint="convert it to 8- or 16-bit integer samples")
    if mode in ("P", "PA"):
        im = im.convert("RGBA" if ("transparency" in im.info or mode == "PA") else "RGB")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("LA" if mode == "La" else "RGB")  # 1, CMYK, YCbCr, LAB, ...
    return np.asarray(im)


def _decode_deep_rgb(path: Path, data: bytes, fmt: str, orientation: int,
                     size: tuple[int, int]) -> np.ndarray:
    if fmt == "TIFF":
        pixels = _tifffile_pixels(data)
        if pixels is not None:
            return pixels
    flags = cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if pixels is None or pixels.ndim != 3:
        raise InputError("the image data is corrupt or truncated", path=path,
                         hint="open it in an image viewer; re-export or re-scan it")
    channels = [2, 1, 0, 3] if pixels.shape[2] == 4 else [2, 1, 0]
    pixels = np.ascontiguousarray(pixels[..., channels])
    if fmt == "TIFF" and orientation != 1:
        pixels = _undo_orientation(pixels, orientation)
    if pixels.shape[:2] != (size[1], size[0]):
        raise InputError("the decoded size does not match the header", path=path,
                         hint="re-save it as an uncompressed or deflate TIFF")
    return pixels


def _tifffile_pixels(data: bytes) -> np.ndarray | None:
    """First page of a TIFF as stored; None when its compression needs the imagecodecs package."""
    import tifffile

    try:
        pixels = tifffile.imread(io.BytesIO(data), key=0)
    except KeyError:  # "<COMPRESSION.LZW: 5> requires the 'imagecodecs' package"
        return None
    if pixels.ndim == 3 and pixels.shape[0] in (3, 4) and pixels.shape[2] not in (3, 4):
        pixels = np.moveaxis(pixels, 0, -1)  # planar configuration
    return np.ascontiguousarray(pixels.astype(np.uint16))


# Pillow's TIFF loader applies the EXIF orientation (ImageOps.exif_transpose in load_end) and
# OpenCV's TIFF decoder does too, even with IMREAD_IGNORE_ORIENTATION (opencv-python 5.0);
# these undo it, so pixels stay as stored.
_UNDO_ORIENTATION = {
    2: lambda p: p[:, ::-1], 3: lambda p: p[::-1, ::-1], 4: lambda p: p[::-1],
    5: lambda p: np.swapaxes(p, 0, 1), 6: lambda p: np.rot90(p, 1),
    7: lambda p: np.rot90(p, 2).swapaxes(0, 1), 8: lambda p: np.rot90(p, -1),
}


def _undo_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    return np.ascontiguousarray(_UNDO_ORIENTATION[orientation](pixels))


def _raw_exif(raw: bytes | None) -> bytes | None:
    if not raw:
        return None
    return raw if raw.startswith(_EXIF_HEADER) else _EXIF_HEADER + raw


def _tiff_exif(exif: Image.Exif) -> bytes | None:
    """A TIFF's EXIF: its descriptive IFD0 tags and its Exif/GPS IFDs, not its storage layout."""
    out = Image.Exif()
    for tag in _DESCRIPTIVE_TIFF_TAGS:
        if tag in exif:
            out[tag] = exif[tag]
    for ifd in (_EXIF_IFD, _GPS_IFD):
        sub = exif.get_ifd(ifd)
        if sub:
            out.get_ifd(ifd).update(sub)
    return out.tobytes() if (len(out) or out.get_ifd(_EXIF_IFD) or out.get_ifd(_GPS_IFD)) else None


def _split_channels(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Gray / gray+alpha / RGB / RGBA -> (gray (H, W) or RGB (H, W, 3), alpha or None)."""
    if pixels.ndim == 2:
        return pixels, None
    channels = pixels.shape[2]
    if channels == 1:
        return pixels[..., 0], None
    if channels == 2:
        return pixels[..., 0], pixels[..., 1]
    return pixels[..., :3], (pixels[..., 3] if channels == 4 else None)


def _chroma_kind(rgb: np.ndarray) -> tuple[bool, bool]:
    """(is_color, is_toned) from the chroma of a downscaled copy."""
    if rgb.ndim == 2:
        return False, False
    h, w = rgb.shape[:2]
    scale = min(1.0, 256.0 / max(h, w))
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA)
    y = 0.299 * small[..., 0] + 0.587 * small[..., 1] + 0.114 * small[..., 2]
    chroma = np.stack([(small[..., 2] - y) / 1.772, (small[..., 0] - y) / 1.402], axis=-1).reshape(-1, 2)
    size = np.hypot(chroma[:, 0], chroma[:, 1])
    if np.percentile(size, 99) <= _CHROMA_TOLERANCE:
        return False, False
    strong = size > _CHROMA_TOLERANCE
    concentration = np.hypot(*chroma[strong].sum(axis=0)) / max(float(size[strong].sum()), 1e-9)
    toned = concentration > _TONED_CONCENTRATION
    return not toned, toned


# --- writing ------------------------------------------------------------------------------------

def output_suffix(input_suffix: str, bit_depth: int = 8) -> str:
    """The suffix to write a colorized photo under: the input's own where it can hold
    ``bit_depth`` (".tif" 16 bit stays ".tif", ".jpg" stays ".jpg"), else ".png"."""
    suffix = input_suffix.lower() if input_suffix.startswith(".") else "." + input_suffix.lower()
    fmt = FORMATS_BY_SUFFIX.get(suffix)
    if fmt is None or bit_depth > _MAX_DEPTH[fmt]:
        return ".png"
    return suffix


def write_image(path: str | Path, rgb: np.ndarray, *, bit_depth: int = 8, exif: bytes | None = None,
                icc: bytes | None = None, quality: int = 95, alpha: np.ndarray | None = None) -> Path:
    """Write an RGB photo atomically, the format taken from the suffix.

    Args:
        path: destination; .png, .jpg/.jpeg, .tif/.tiff or .webp.
        rgb: (H, W, 3) float R'G'B' in [0, 1]; rounded to the nearest code.
        bit_depth: 8 or 16; JPEG and WebP hold 8 bit only and are written at 8.
        exif: raw EXIF to carry (as :attr:`Photo.exif`); orientation included, unchanged.
        icc: ICC profile to embed; a profile that is not an RGB one (a gray scan's) is dropped.
        quality: JPEG quality. JPEG is written 4:4:4 (no chroma subsampling) so colour edges
            stay on the luma's edges; WebP is written lossless so the luma survives exactly.
        alpha: optional (H, W) float alpha in [0, 1] (PNG, TIFF, WebP).

    Returns:
        The path written.

    Raises:
        OutputError: unknown suffix, or the folder cannot be written.
    """
    path = Path(path)
    fmt = FORMATS_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        raise OutputError(f"cannot write {path.suffix or 'files without a suffix'}", path=path,
                          hint="use .png, .jpg, .tif or .webp")
    depth = 16 if (bit_depth == 16 and _MAX_DEPTH[fmt] == 16) else 8
    pixels = _quantise(rgb, alpha if fmt != "JPEG" else None, depth)
    icc = _rgb_profile(icc)
    writer = _write_8bit if depth == 8 else (_write_png16 if fmt == "PNG" else _write_tiff16)
    _atomic_write(path, lambda f: writer(f, pixels, fmt, exif=exif, icc=icc, quality=quality))
    return path


def _quantise(rgb: np.ndarray, alpha: np.ndarray | None, depth: int) -> np.ndarray:
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) RGB, got shape {rgb.shape}")
    if alpha is not None:
        rgb = np.concatenate([rgb, np.asarray(alpha, np.float32)[..., None]], axis=-1)
    top = 2 ** depth - 1
    return np.round(np.clip(rgb, 0.0, 1.0) * top).astype(np.uint16 if depth == 16 else np.uint8)


def _rgb_profile(icc: bytes | None) -> bytes | None:
    if icc and icc[16:20] != b"RGB ":
        log.info("not embedding the input's %r ICC profile in an RGB output", icc[16:20].decode("latin-1"))
        return None
    return icc or None


def _atomic_write(path: Path, write) -> None:
    from restorer.fs import open_atomic

    with open_atomic(path, "wb") as f:
        write(f)


def _write_8bit(f, pixels: np.ndarray, fmt: str, *, exif, icc, quality) -> None:
    image = Image.fromarray(pixels, "RGBA" if pixels.shape[2] == 4 else "RGB")
    options: dict = {"icc_profile": icc} if icc else {}
    if exif:
        options["exif"] = exif
    if fmt == "JPEG":
        options.update(quality=quality, subsampling=0)
    elif fmt == "WEBP":
        options.update(lossless=True, quality=80)
    elif fmt == "TIFF" and not exif:
        # Pillow's libtiff (compressing) writer fails on the EXIF IFD pointer ("Error setting from
        # dictionary"), so a TIFF that carries EXIF is written uncompressed by Pillow's own writer.
        options.update(compression="tiff_adobe_deflate")
    image.save(f, format=fmt, **options)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _write_png16(f, pixels: np.ndarray, fmt: str, *, exif, icc, quality) -> None:
    bgr = pixels[..., [2, 1, 0, 3]] if pixels.shape[2] == 4 else pixels[..., ::-1]
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(bgr))
    if not ok:
        raise OutputError("the PNG encoder failed")
    png = encoded.tobytes()
    extra = b""
    if icc:
        extra += _png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc))
    if exif:
        extra += _png_chunk(b"eXIf", exif.removeprefix(_EXIF_HEADER))
    ihdr_end = 8 + 4 + 4 + 13 + 4  # signature, then IHDR's length, type, body and CRC
    f.write(png[:ihdr_end] + extra + png[ihdr_end:])


def _write_tiff16(f, pixels: np.ndarray, fmt: str, *, exif, icc, quality) -> None:
    import tifffile

    tags = []
    if exif:
        parsed = Image.Exif()
        parsed.load(exif)
        for tag in _DESCRIPTIVE_TIFF_TAGS:
            value = parsed.get(tag)
            if isinstance(value, int):
                tags.append((tag, "H", 1, value, True))
            elif isinstance(value, str) and value:
                tags.append((tag, "s", 0, value, True))
        if parsed.get_ifd(_EXIF_IFD) or parsed.get_ifd(_GPS_IFD):
            log.info("16-bit TIFF output keeps orientation and description tags, not the EXIF IFD")
    buffer = io.BytesIO()  # tifffile wants a named file or a BytesIO, not an fdopen'ed one
    tifffile.imwrite(buffer, pixels, photometric="rgb", compression="zlib", iccprofile=icc,
                     extrasamples=("unassalpha",) if pixels.shape[2] == 4 else None,
                     extratags=tags, metadata=None, software=False)
    f.write(buffer.getvalue())
