"""The image types the image endpoint serves, told by their first bytes (never by the file name)."""

# Enough for every signature below (WebP's is at 8-11, BMP's header size at 14-17).
SNIFF_BYTES = 32
# The sizes of the BMP info headers that exist (BITMAPCOREHEADER ... BITMAPV5HEADER): "BM" alone is too weak.
_BMP_INFO_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})


def sniff_image_type(head: bytes) -> str | None:
    """The Content-Type of a JPEG, PNG, GIF, WebP, BMP or TIFF file from its first SNIFF_BYTES, else None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"BM") and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_INFO_HEADER_SIZES:
        return "image/bmp"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    return None
