"""A generated corpus of hostile files and names for the folder tests (reusable by any test).

`write_hostile_folder(folder, outside)` writes, into `folder`, images whose names no file system
forbids (bytes that are not UTF-8, newlines, quotes, markup, formula and shell characters, a
name of 240 bytes), files that decode into huge or extremely elongated images from a few KB,
links (broken, looping, to a file outside, to a file inside, hard), a pipe, a device (where
one may be made), an empty file, a folder named like an image, and formats that are easy to get wrong (animated GIF and PNG, CMYK
JPEG, 16-bit PNG, palette with transparency, multi-page TIFF, WebP, a JPEG with 64 KB of EXIF).
It returns one `Hostile` per entry: what the folder reader must make of it.

`tree_digest(folder)` hashes everything under a folder (names as bytes, types, link targets,
permissions, modification times, contents) without following links: equal digests before and
after a run mean the run changed nothing there.
"""
import hashlib
import io
import os
import stat
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

IS_ROOT = hasattr(os, 'geteuid') and os.geteuid() == 0  # permissions do not stop root

# Images that must load, under names that are legal bytes on Linux.
HOSTILE_NAMES = (
    b'caf\xc3\xa9 \xf0\x9f\x98\x80.png',     # UTF-8: an accent and an emoji
    b'latin-1 \xe9t\xe9.png',                # not UTF-8
    b'\xff\xfe.png',                         # not UTF-8 at all
    b'new\nline.png', b'tab\tand\rcr.png', b'\x1b[31mred.png', b'del\x7f.png',
    b'quote"and\'apostrophe.png', b'<img src=x onerror=alert(1)>.png', b'&amp;.png',
    b'back\\slash \\x41.png', b'$x^$ $\\foo$.png', b'-rf.png', b'--help.png',
    b'=HYPERLINK("http:x").png', b'+1.png', b'@SUM(A1).png', b'%41 #frag ?q=1.png',
    b'\xe2\x80\xaereversed.png',             # a right-to-left override
    b' leading and trailing space .png', b'L' * 236 + b'.png',  # 240 bytes
)


@dataclass
class Hostile:
    name: bytes        # path relative to the folder
    reason: str = ''   # part of the skip reason; '' for a file that must load as an image
    size: tuple = ()   # (width, height) it loads at, where it loads
    listed: bool = True  # False for what is not a file of the folder at all (a folder)

    @property
    def loads(self):
        return self.listed and not self.reason


def picture(seed, size=(12, 10)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def encoded(image, fmt, **params):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def png_chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))


def blank_png(width, height, bit_depth=1):
    """A valid, all-black greyscale PNG of any size, built row by row: the image is never held
    in memory here, and the file is tiny (zeros compress about 1000:1)."""
    row = b'\0' * (1 + (width * bit_depth + 7) // 8)  # filter byte, then the packed pixels
    compressor, parts = zlib.compressobj(9), []
    for _ in range(height):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    header = struct.pack('>IIBBBBB', width, height, bit_depth, 0, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + png_chunk(b'IHDR', header)
            + png_chunk(b'IDAT', b''.join(parts)) + png_chunk(b'IEND', b''))


def jpeg_claiming(width, height):
    """A small JPEG whose header claims width x height (its data is for 16 x 16)."""
    data = bytearray(encoded(picture(0, (16, 16)), 'JPEG'))
    sof = data.index(b'\xff\xc0')  # baseline frame header: length, precision, height, width
    data[sof + 5:sof + 9] = struct.pack('>HH', height, width)
    return bytes(data)


def huge_exif_jpeg():
    exif = Image.Exif()
    exif[0x010E] = 'x' * 60000  # ImageDescription: 60 KB, near the 64 KB segment limit
    return encoded(picture(1), 'JPEG', exif=exif.tobytes())


def animated(fmt):
    frames = [picture(seed) for seed in range(3)]
    if fmt == 'GIF':
        frames = [f.convert('P', palette=Image.Palette.ADAPTIVE) for f in frames]
    return encoded(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def palette_with_transparency():
    image = picture(2).convert('P', palette=Image.Palette.ADAPTIVE, colors=16)
    return encoded(image, 'PNG', transparency=0)


def grey16():
    values = np.random.default_rng(3).integers(0, 65536, (10, 12)).astype('<u2')
    return encoded(Image.frombytes('I;16', (12, 10), values.tobytes()), 'PNG')


def multipage_tiff():
    return encoded(picture(4), 'TIFF', save_all=True, append_images=[picture(5, (30, 20))])


def truncated_jpeg():
    rng = np.random.default_rng(6)
    data = encoded(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), 'JPEG',
                   quality=95)
    return data[:len(data) // 2]


def write(path, data):
    with open(path, 'wb') as f:
        f.write(data)


def files_with_content():
    """name -> (bytes, expected skip reason or '', size it loads at)."""
    limit = f"over the limit of {Image.MAX_IMAGE_PIXELS:,}"
    return {
        b'empty.png': (b'', 'empty file (0 bytes)', ()),
        b'text.jpg': (b'not an image at all\n', 'not an image', ()),
        b'truncated.jpg': (truncated_jpeg(), 'truncated', ()),
        b'bomb 12000x12000 1-bit.png': (blank_png(12000, 12000),
                                        f'12,000 x 12,000 = 144,000,000 pixels, {limit}', ()),
        b'bomb 20000x20000 1-bit.png': (blank_png(20000, 20000),
                                        f'400,000,000 pixels, {limit}', ()),
        b'strip 1000000x1.png': (blank_png(1_000_000, 1),
                                 '1,000,000 x 1 pixels: aspect ratio 1:1,000,000, over 1:100', ()),
        b'tower 1x1000.png': (blank_png(1, 1000, 8), 'aspect ratio 1:1,000, over 1:100', ()),
        b'jpeg claiming 10000x10000.jpg': (jpeg_claiming(10000, 10000),
                                           f'10,000 x 10,000 = 100,000,000 pixels, {limit}', ()),
        b'jpeg claiming 60000x60000.jpg': (jpeg_claiming(60000, 60000),
                                           f'3,600,000,000 pixels, {limit}', ()),
        b'long but fine 1000x10.png': (blank_png(1000, 10), '', (1000, 10)),
        b'huge exif.jpg': (huge_exif_jpeg(), '', (12, 10)),
        b'animated.gif': (animated('GIF'), '', (12, 10)),
        b'animated.png': (animated('PNG'), '', (12, 10)),
        b'cmyk.jpg': (encoded(picture(7).convert('CMYK'), 'JPEG'), '', (12, 10)),
        b'grey 16-bit.png': (grey16(), '', (12, 10)),
        b'palette transparent.png': (palette_with_transparency(), '', (12, 10)),
        b'pages.tif': (multipage_tiff(), '', (12, 10)),
        b'picture.webp': (encoded(picture(8), 'WEBP', lossless=True), '', (12, 10)),
    }


def write_hostile_folder(folder, outside):
    """Write the corpus into folder (created), with one image in `outside` (a folder beside it)
    that a link points to; returns the list of Hostile entries."""
    root, out = os.fsencode(folder), os.fsencode(outside)
    os.makedirs(root, exist_ok=True)
    os.makedirs(out, exist_ok=True)
    cases = []
    for i, name in enumerate(HOSTILE_NAMES):
        write(os.path.join(root, name), encoded(picture(100 + i), 'PNG'))
        cases.append(Hostile(name, size=(12, 10)))
    for name, (data, reason, size) in files_with_content().items():
        write(os.path.join(root, name), data)
        cases.append(Hostile(name, reason, size))
    write(os.path.join(out, b'elsewhere.png'), encoded(picture(9), 'PNG'))
    links = {  # name -> (target, reason)
        b'link to outside.png': (os.path.join(out, b'elsewhere.png'), ''),
        b'link to inside.png': (HOSTILE_NAMES[0], f'the same file as {HOSTILE_NAMES[0].decode()}'),
        b'broken link.png': (b'nowhere.png', 'broken link (to nowhere.png)'),
        b'self link.png': (b'self link.png', 'cannot be read: Too many levels of symbolic links'),
        b'loop': (b'.', 'link to a folder already included (.)'),
    }
    for name, (target, reason) in links.items():
        os.symlink(target, os.path.join(root, name))
        cases.append(Hostile(name, reason, (12, 10) if not reason else ()))
    os.link(os.path.join(root, HOSTILE_NAMES[1]), os.path.join(root, b'z hard link.png'))
    cases.append(Hostile(b'z hard link.png', 'the same file as latin-1 \\xe9t\\xe9.png'))
    os.mkfifo(os.path.join(root, b'pipe.png'))
    cases.append(Hostile(b'pipe.png', 'not a regular file (a pipe)'))
    try:  # like /dev/zero: reading it would never end (creating one needs root)
        os.mknod(os.path.join(root, b'device.jpg'), stat.S_IFCHR | 0o600, os.makedev(1, 5))
        cases.append(Hostile(b'device.jpg', 'not a regular file (a device)'))
    except (PermissionError, AttributeError):
        pass
    os.mkdir(os.path.join(root, b'folder.png'))  # a folder, not a file: nothing to list
    cases.append(Hostile(b'folder.png', listed=False))
    unreadable = os.path.join(root, b'unreadable.png')
    write(unreadable, encoded(picture(10), 'PNG'))
    os.chmod(unreadable, 0)
    cases.append(Hostile(b'unreadable.png', '' if IS_ROOT else 'cannot be read: permission denied',
                         (12, 10)))
    return cases


def tree_digest(folder):
    """A hash of everything under folder, links not followed; a pipe is never opened."""
    digest = hashlib.sha256()
    root = os.fsencode(folder)
    for where, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            path = os.path.join(where, name)
            info = os.lstat(path)
            digest.update(b'\0'.join([os.path.relpath(path, root), oct(info.st_mode).encode(),
                                      str(info.st_mtime_ns).encode(), b'']))
            if stat.S_ISLNK(info.st_mode):
                digest.update(os.readlink(path))
            elif stat.S_ISREG(info.st_mode) and os.access(path, os.R_OK):
                with open(path, 'rb') as f:
                    digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()
