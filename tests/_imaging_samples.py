"""Small image files written in code for the imaging tests: real encoders (Pillow, pydicom), plus
hand-written headers for the hostile cases (decompression bombs, absurd dimensions).

Nothing here is committed as a binary; tests write what they need into ``tmp_path`` or memory.
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

# pydicom-data ships real CR radiographs inside its wheel (no download): MONOCHROME1, uncompressed and
# JPEG 2000 lossless (J2KR) / lossy (J2KI) versions of the same image; *_UNCI is the lossy image decoded.
PYDICOM_DATA_FILES = ("RG1_UNCR.dcm", "RG1_J2KR.dcm", "RG1_J2KI.dcm", "RG1_UNCI.dcm",
                      "RG3_UNCR.dcm", "RG3_J2KR.dcm", "RG3_J2KI.dcm", "RG3_UNCI.dcm")


def pydicom_data_path(name: str) -> str:
    """Path of a file shipped in the pydicom-data wheel (``data_store`` package); never downloads."""
    from data_store import DataStore

    return DataStore().get_path(name)


def pydicom_test_file(name: str) -> str:
    """Path of a file bundled with pydicom itself (``download=False``: never fetches from the network)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        raise FileNotFoundError(name)
    return str(path)


def phantom(height: int = 96, width: int = 128, *, seed: int = 0) -> np.ndarray:
    """A uint8 grey image with structure (gradient, bright 'bone' disc, noise) and no symmetry."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    img = 40 + 120 * xx / width + 30 * yy / height
    disc = (yy - height * 0.35) ** 2 + (xx - width * 0.3) ** 2 < (min(height, width) * 0.2) ** 2
    img = img + 80 * disc + rng.normal(0, 4, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def encode(arr_or_img: np.ndarray | Image.Image, fmt: str, **save_kw) -> bytes:
    """Encode with Pillow into ``fmt`` (PNG, JPEG, TIFF, BMP, WEBP, GIF, PDF)."""
    im = arr_or_img if isinstance(arr_or_img, Image.Image) else Image.fromarray(arr_or_img)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **save_kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 12000, height: int = 12000) -> bytes:
    """A valid 8-bit grey PNG of ``width``×``height`` zeros: ~140 KB on disk, 144 MB when decoded."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    comp = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte + pixels
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width``×``height`` with a tiny, short IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(bytes(64))
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF header is patched to claim ``width``×``height``."""
    data = bytearray(encode(phantom(64, 64), "JPEG", quality=90))
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def bmp_claiming(width: int, height: int) -> bytes:
    """A small real BMP whose header is patched to claim ``width``×``height``."""
    data = bytearray(encode(phantom(64, 64), "BMP"))
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


def webp_claiming(width: int, height: int) -> bytes:
    """A small lossless WebP whose VP8L header is patched to claim ``width``×``height`` (max 16384)."""
    data = bytearray(encode(phantom(64, 64), "WEBP", lossless=True))
    assert data[12:16] == b"VP8L" and data[20] == 0x2F
    (bits,) = struct.unpack_from("<I", data, 21)
    bits = (bits & ~((1 << 28) - 1)) | (width - 1) | ((height - 1) << 14)
    struct.pack_into("<I", data, 21, bits)
    return bytes(data)


def tiff_claiming(width: int, height: int) -> bytes:
    """A hand-written uncompressed 8-bit grey TIFF whose IFD claims ``width``×``height``, 16 bytes of data."""
    entries = [  # tag, type (3 SHORT, 4 LONG), count, value
        (256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
        (273, 4, 1, 0), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, 16),
    ]
    ifd_offset = 8
    data_offset = ifd_offset + 2 + 12 * len(entries) + 4
    out = bytearray(b"II*\x00" + struct.pack("<I", ifd_offset) + struct.pack("<H", len(entries)))
    for tag, typ, count, value in entries:
        if tag == 273:
            value = data_offset
        packed = struct.pack("<H", value) + b"\x00\x00" if typ == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, typ, count) + packed
    out += struct.pack("<I", 0) + bytes(16)
    return bytes(out)


def dicom_bytes(pixels: np.ndarray | None = None, *, photometric: str = "MONOCHROME2", bits_stored: int | None = None,
                window: tuple[float, float] | None = None, rescale: tuple[float, float] | None = None,
                rows: int | None = None, columns: int | None = None, frames: int | None = None,
                preamble: bool = True, extra: dict | None = None) -> bytes:
    """A DICOM file (Explicit VR Little Endian) written by pydicom, with a fake patient.

    ``pixels``: uint8/uint16 H×W (or H×W×3 for RGB) or None for no Pixel Data. ``rows``/``columns``/
    ``frames`` override the header (for absurd headers). The patient is "Doe^Jane", ID "PID-12345",
    born 19800101, so tests can check that none of it leaks into metadata.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-12345"
    ds.PatientBirthDate = "19800101"
    ds.StudyDate = "20240131"
    ds.InstitutionName = "General Hospital"
    ds.Modality = "DX"
    ds.BodyPartExamined = "PELVIS"
    ds.ViewPosition = "AP"
    ds.ImagerPixelSpacing = [0.15, 0.15]
    if pixels is not None:
        itemsize = pixels.dtype.itemsize
        ds.Rows, ds.Columns = pixels.shape[:2]
        ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
        if pixels.ndim == 3:
            ds.PlanarConfiguration = 0
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = 8 * itemsize
        ds.BitsStored = bits_stored or 8 * itemsize
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 0
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if rows is not None:
        ds.Rows = rows
    if columns is not None:
        ds.Columns = columns
    if frames is not None:
        ds.NumberOfFrames = frames
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    return data if preamble else data[128:]


def dicom_deflate_bomb(inflated_bytes: int = 50_000_000) -> bytes:
    """A deflated-transfer-syntax DICOM whose dataset inflates to ``inflated_bytes`` (a zip bomb)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    # Explicit VR little endian elements: Rows, Columns (US), then a Pixel Data (OB) header.
    body = (struct.pack("<HH2sHH", 0x0028, 0x0010, b"US", 2, 64) + struct.pack("<HH2sHH", 0x0028, 0x0011, b"US", 2, 64)
            + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, inflated_bytes))
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [comp.compress(body)]
    chunk = bytes(1 << 20)
    for _ in range(inflated_bytes >> 20):
        parts.append(comp.compress(chunk))
    parts.append(comp.flush())
    out = io.BytesIO()
    out.write(bytes(128) + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=True)
    out.write(b"".join(parts))
    return out.getvalue()


def jpeg_with_exif_orientation(arr: np.ndarray, orientation: int) -> bytes:
    """A JPEG of ``arr`` carrying an EXIF Orientation tag, as phones write them."""
    im = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(im, "JPEG", quality=95, exif=exif.tobytes())
