"""eval.py --annotate OUTDIR --export-folders DIR: the clusters as an ImageNet-style tree,
DIR/<cluster name>/<id>-<file name>, which torchvision's ImageFolder and FiftyOne's
directory-tree importer read (the folder name is the class).

Each image is a symbolic link to the original (or, with --copy-images, a copy of it); the
originals are never touched. A cluster's name becomes a folder name reversibly: '%', '/', '\\',
the characters Windows refuses (<>:"|?*), controls and a leading or trailing dot or space are
written as %XX (UTF-8 bytes), so urllib.parse.unquote(folder name) is the name again. Clusters
of one name share its folder. DIR/.scan-class-folders.json lists what was made: exporting again
into DIR removes only those entries, and only while unchanged; anything else there is left
alone, and nothing is written through a link (links are created, never followed).
"""
import hashlib
import json
import os

from annotation.names import AnnotationError
from utils.checkpoint import atomic_write_text
from utils.lock import LOCK_NAME, is_lock_file, lock_output_folder, release_output_lock
from utils.paths import file_digest, is_inside
from utils.text import plural, printable_path

MANIFEST = '.scan-class-folders.json'
WRITTEN_BY = 'SCAN eval.py --export-folders'
UNSAFE = set('%/\\<>:"|?*')
MAX_NAME_BYTES = 255  # the longest file or folder name most file systems take


def folder_name(name):
    """A cluster name as a folder name that urllib.parse.unquote turns back into the name."""
    def escape(char):
        return ''.join(f'%{b:02X}' for b in char.encode('utf-8'))
    chars = [escape(c) if c in UNSAFE or not c.isprintable() else c for c in name]
    for index in (0, -1):  # '.', '..', hidden folders; Windows drops trailing dots and spaces
        if chars and chars[index] in ('.', ' '):
            chars[index] = escape(chars[index])
    return ''.join(chars)


def file_name(index, path):
    """<export id>-<original file name>: unique in a folder, the extension kept (ImageFolder
    picks images by it); a name too long for the file system is shortened before it."""
    base = os.fsencode(os.path.basename(path))
    prefix = f"{index:07d}-".encode()
    if len(prefix) + len(base) > MAX_NAME_BYTES:
        stem, ext = os.path.splitext(base)
        base = stem[:MAX_NAME_BYTES - len(prefix) - len(ext)] + ext
    return os.fsdecode(prefix + base)


def check_destination(dest, image_folders):
    """Refuse, before any model runs, a destination that must not be written: inside an image
    folder, a link, a file, or a folder holding other files that is not an earlier export."""
    if any(is_inside(dest, folder) for folder in image_folders):
        raise AnnotationError(f"--export-folders {dest} is inside an image folder, where nothing "
                              f"is written: choose a folder outside it")
    if os.path.islink(dest):
        raise AnnotationError(f"--export-folders {dest} is a link: nothing is written through "
                              f"a link; give the folder it points to, or a new folder")
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise AnnotationError(f"--export-folders {dest} is a file: choose a new folder name")
    entries = set(os.listdir(dest)) if os.path.isdir(dest) else set()
    entries.discard(LOCK_NAME if LOCK_NAME in entries and is_lock_file(
        os.path.join(dest, LOCK_NAME)) else '')
    if entries and read_manifest(dest) is None:
        shown = ', '.join(sorted(entries)[:5])
        raise AnnotationError(f"--export-folders {dest} already holds files that are not an "
                              f"earlier class-folder export ({shown}): choose a new or empty "
                              f"folder")


def read_manifest(dest):
    try:
        with open(os.path.join(dest, MANIFEST), encoding='utf-8') as f:
            manifest = json.load(f)
        if manifest.get('written_by') == WRITTEN_BY and isinstance(manifest.get('entries'), dict):
            return manifest
    except (OSError, ValueError, AttributeError):
        pass
    return None


def unchanged(path, entry):
    """Whether `path` is still what an earlier export made there."""
    if entry.get('link') is not None:
        return os.path.islink(path) and os.readlink(path) == entry['link']
    if os.path.islink(path) or not os.path.isfile(path):
        return False
    return entry.get('pending') or (os.path.getsize(path) == entry.get('size')
                                    and file_digest(path) == entry.get('sha256'))


def remove_previous(dest, manifest):
    """Remove what an earlier export made, all of it unchanged, or nothing (the error names
    what changed); then the class folders it made, where empty."""
    entries = manifest['entries']
    changed = [rel for rel, entry in entries.items()
               if os.path.lexists(os.path.join(dest, rel))
               and not unchanged(os.path.join(dest, rel), entry)]
    if changed:
        raise AnnotationError(f"--export-folders {dest}: {', '.join(sorted(changed)[:5])} "
                              f"changed since the last export into it (nothing is replaced "
                              f"that this code did not write): move them away, or choose a "
                              f"new folder")
    for rel in entries:
        if os.path.lexists(os.path.join(dest, rel)):
            os.unlink(os.path.join(dest, rel))  # the link itself, never its target
    for folder in manifest.get('folders', []):
        path = os.path.join(dest, folder)
        if os.path.isdir(path) and not os.path.islink(path) and not os.listdir(path):
            os.rmdir(path)


def copy_file(source, path):
    """Copy into a new file (O_EXCL | O_NOFOLLOW: never into or through something there)."""
    digest, size = hashlib.sha256(), 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0),
                 0o666)
    with open(source, 'rb') as src, os.fdopen(fd, 'wb') as out:
        for block in iter(lambda: src.read(1 << 20), b''):
            out.write(block)
            digest.update(block)
            size += len(block)
    return {'size': size, 'sha256': digest.hexdigest()}


def plan(paths, clusters, names):
    """{relative path: original path} and the class folders, for images `paths` in `clusters`."""
    files, folders = {}, set()
    for index, (path, cluster) in enumerate(zip(paths, clusters)):
        folder = folder_name(names[int(cluster)])
        if len(folder.encode('utf-8')) > MAX_NAME_BYTES:
            raise AnnotationError(f"the name of cluster {int(cluster)} is too long for a folder "
                                  f"name ({len(folder.encode('utf-8'))} bytes, at most "
                                  f"{MAX_NAME_BYTES}): give it a shorter one with --names")
        folders.add(folder)
        files[os.path.join(folder, file_name(index, path))] = os.path.abspath(path)
    return files, sorted(folders)


def export_class_folders(dest, export, copy=False):
    """Write the tree of a written annotation export (annotation.export.Export: its images,
    final clusters and names); returns a one-line summary."""
    paths = export.images.dataset.paths
    if paths is None:
        raise AnnotationError("--export-folders needs images that are files (a folder, or "
                              "--predict FOLDER), not a benchmark split")
    return write_tree(dest, paths, export.clusters, export.names, copy,
                      export.folder.image_folders)


def write_tree(dest, paths, clusters, names, copy=False, image_folders=()):
    """`paths`: the original files (as the file system gives them), `clusters`: each image's
    cluster, `names`: {cluster: name}."""
    check_destination(dest, image_folders)
    files, folders = plan(paths, clusters, names)
    os.makedirs(dest, exist_ok=True)
    lock_output_folder(dest, hint='Choose a folder you can write to.', clean=False)
    try:
        previous = read_manifest(dest) or {'entries': {}}
        blocked = [rel for rel in files if os.path.lexists(os.path.join(dest, rel))
                   and rel not in previous['entries']] + \
            [f for f in folders if os.path.islink(os.path.join(dest, f)) or
             (os.path.lexists(os.path.join(dest, f)) and not os.path.isdir(os.path.join(dest, f)))]
        if blocked:  # checked before anything is removed or written
            raise AnnotationError(f"--export-folders {dest}: {', '.join(sorted(blocked)[:5])} "
                                  f"already exist there and are not ours (or are links): move "
                                  f"them away, or choose a new folder")
        remove_previous(dest, previous)
        pending = {rel: ({'link': source} if not copy else {'pending': True})
                   for rel, source in files.items()}
        write_manifest(dest, pending, folders)
        entries = {}
        for folder in folders:
            os.makedirs(os.path.join(dest, folder), exist_ok=True)
        for rel, source in files.items():
            path = os.path.join(dest, rel)
            if copy:
                entries[rel] = copy_file(source, path)
            else:
                os.symlink(source, path)
                entries[rel] = {'link': source}
        write_manifest(dest, entries, folders)
    finally:
        release_output_lock(dest)
    how = 'copies' if copy else 'links to the originals'
    return (f"class folders: {plural(len(files), 'image')} in {plural(len(folders), 'folder')} "
            f"under {printable_path(os.path.abspath(dest))} ({how})")


def write_manifest(dest, entries, folders):
    atomic_write_text(os.path.join(dest, MANIFEST), json.dumps(
        {'written_by': WRITTEN_BY, 'folders': folders,
         'entries': {os.fsdecode(k): v for k, v in entries.items()}}, ensure_ascii=True))
