"""The output folder of an export, which may hold the user's own files: write only there, and
replace or remove only what an earlier export wrote and nobody changed since.

A manifest, OUTDIR/.scan-export.json, lists every file an export wrote (relative path, size,
sha256). Before writing, each planned file is checked: free, or ours and unchanged. Files of an
earlier export that this one does not write again are removed if unchanged. Every path is
resolved first: nothing is followed out of the folder through a link, nothing inside an image
folder is written or removed, and a file the user changed (an edited names.yml, a CSV saved
from a spreadsheet) is never replaced.

While an export writes, the manifest lists its planned files as pending, each with the hash of
the file of ours that is there now (if any), and a journal (.scan-export.journal) gets the hash
of each file just before it is renamed into place: after a kill or a full disk, a file there
is ours only if it is one of those, so a names.yml edited afterwards is the user's.
"""
import hashlib
import json
import os
import re
import tempfile
import threading

from annotation.names import AnnotationError
from utils.checkpoint import UMASK
from utils.lock import LOCK_NAME, is_lock_file, lock_output_folder, release_output_lock
from utils.outputs import open_no_follow
from utils.paths import file_digest, is_inside

MANIFEST = '.scan-export.json'
JOURNAL = '.scan-export.journal'
JOURNAL_LIMIT = 64 << 20  # bytes read of a journal (a line per file: far more than any export)
WRITTEN_BY = 'SCAN eval.py --annotate'
# Only files named as exports name them are ever removed, whatever a manifest says.
OUR_NAMES = re.compile(r'(annotations\.csv|index\.html|gallery\.js|gallery-data\.js|names\.yml'
                       r'|naming\.js|map\.js|map\.png'
                       r'|summary\.json|thumbs/\d{7,}\.png|prototypes/cluster_\d{3,}\.png)')
SHOWN = 5  # file names listed in a refusal
# The temporary files of write() (tempfile.mkstemp: the prefix and 8 random characters), which
# an export killed while writing leaves behind; the next export into the folder removes them.
PARTIAL = re.compile(r'\.partial-[a-z0-9_]{8}')


def _listing(names):
    shown = ', '.join(sorted(names)[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else '')


class ExportFolder:
    """An output folder checked for an export: open() refuses what must not be written to."""

    def __init__(self, path, image_folders, previous, force):
        self.path = os.path.abspath(path)
        self.real = os.path.realpath(self.path)
        self.image_folders = [os.path.realpath(f) for f in image_folders]
        self.previous = previous  # {relative path: entry} of the earlier export here, or {}
        self.force = force
        self.written = {}  # {relative path: entry} of this export
        self._journal, self._journal_lock = None, threading.Lock()

    @classmethod
    def open(cls, path, image_folders=(), force=False):
        """Check that `path` can hold an export: a new or empty folder, or an earlier export
        of ours; with force, any folder (our files are then written beside the user's, never
        over them)."""
        for folder in image_folders:
            if is_inside(path, folder):
                raise AnnotationError(
                    f"output folder {path} is inside the image folder "
                    f"{os.path.realpath(folder)}, where nothing is written: choose a folder "
                    f"outside it")
        if os.path.exists(path) and not os.path.isdir(path):
            raise AnnotationError(f"output folder {path} is a file, not a folder: choose a "
                                  f"new folder name")
        existing = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
        while not os.path.isdir(existing):
            existing = os.path.dirname(existing)
        if not os.access(existing, os.W_OK | os.X_OK):
            raise AnnotationError(f"output folder {path}: {existing} is not writable: choose "
                                  f"a folder you can write to")
        entries = os.listdir(path) if os.path.isdir(path) else []
        if LOCK_NAME in entries and is_lock_file(os.path.join(path, LOCK_NAME)):
            entries.remove(LOCK_NAME)  # an export's lock, held now or left by a killed one
        previous = cls._read_manifest(path) if MANIFEST in entries else None
        if entries and previous is None and not force:
            raise AnnotationError(
                f"output folder {path} already holds files that are not an earlier export "
                f"({_listing(entries)}): choose a new or empty folder, or add --force to write "
                f"the export beside them (no file of yours is replaced or removed)")
        return cls(path, image_folders, previous or {}, force)

    @staticmethod
    def _read_manifest(path):
        try:
            with open(os.path.join(path, MANIFEST), encoding='utf-8') as f:
                manifest = json.load(f)
            if manifest.get('written_by') == WRITTEN_BY and isinstance(manifest['files'], dict):
                return ExportFolder._add_journal(path, manifest['files'])
        except (OSError, ValueError, KeyError, AttributeError):
            pass
        return None

    @staticmethod
    def _add_journal(path, files):
        """The files of a manifest, each pending one with the hashes that an interrupted
        export was about to write there (its journal)."""
        journal = os.path.join(path, JOURNAL)
        if os.path.islink(journal) or not os.path.isfile(journal):
            return files
        with open(journal, encoding='utf-8', errors='replace') as f:
            lines = f.read(JOURNAL_LIMIT).splitlines()
        for line in lines:
            try:
                relative, size, digest = json.loads(line)
            except (ValueError, TypeError):
                continue  # a line cut short by the kill
            entry = files.get(relative) if isinstance(relative, str) else None
            if isinstance(entry, dict) and entry.get('pending'):
                entry.setdefault('intended', []).append([size, digest])
        return files

    # ------------------------------------------------------------------ what may be touched

    def _resolve(self, relative):
        """The absolute path of a file of the export, or None where it would leave the folder,
        pass through a link or another file, or lie inside an image folder."""
        if os.path.isabs(relative) or os.path.normpath(relative) != relative \
                or relative.startswith('..'):
            return None
        path = os.path.join(self.path, relative)
        parent = os.path.dirname(path)
        if os.path.lexists(parent) and not os.path.isdir(parent):
            return None  # a file where the export puts a folder
        if os.path.realpath(parent) != os.path.join(self.real, os.path.dirname(relative)) \
                .rstrip(os.sep):
            return None  # a link on the way
        if any(is_inside(parent, folder) for folder in self.image_folders):
            return None
        return path

    def _unchanged(self, relative, path):
        """Whether the file at `path` is the one an earlier export wrote there."""
        entry = self.previous.get(relative)
        if not isinstance(entry, dict) or not os.path.isfile(path) or os.path.islink(path):
            return False
        # pending: planned by an export that stopped before recording it; ours only if it is
        # the file of ours that was there then or one that export wrote
        known = [[entry.get('size'), entry.get('sha256')]] + (
            entry.get('intended', []) if entry.get('pending') else [])
        size = os.path.getsize(path)
        if not any(isinstance(k, list) and len(k) == 2 and k[0] == size for k in known):
            return False
        digest = file_digest(path)
        return any(k == [size, digest] for k in known)

    def is_ours(self, relative):
        """Whether the file `relative` is ours to replace or remove."""
        path = self._resolve(relative)
        return path is not None and OUR_NAMES.fullmatch(relative) is not None \
            and self._unchanged(relative, path)

    def user_file(self, relative):
        """The path of `relative` when it exists and is not ours (a names.yml the user edited
        or put there); None otherwise."""
        path = os.path.join(self.path, relative)
        return path if os.path.lexists(path) and not self.is_ours(relative) else None

    def check_plan(self, planned):
        """Refuse before anything is written when a planned file cannot be written: its place
        holds a file that is not ours or was changed, a link, or lies in an image folder."""
        blocked = []
        for relative in planned:
            path = self._resolve(relative)
            if path is None or (os.path.lexists(path) and not self.is_ours(relative)):
                blocked.append(relative)
        if blocked:
            raise AnnotationError(
                f"output folder {self.path}: {_listing(blocked)} already exist there and were "
                f"not written by an earlier export (or were changed since, or are links or "
                f"image folders); nothing is replaced: move them away, or choose a new folder")

    # ---------------------------------------------------------------------------- writing

    def begin(self, planned):
        """Hold the folder's lock (one export at a time writes there), check the plan again
        against what is there now, remove the temporary files of a killed export, record the
        plan in the manifest (so an interrupted export can be redone), then remove the
        unchanged files of an earlier export that this one does not write."""
        lock = os.path.join(self.path, LOCK_NAME)
        if os.path.lexists(lock) and not is_lock_file(lock):
            raise AnnotationError(f"output folder {self.path} holds a file {LOCK_NAME} that this "
                                  f"code did not write: move it away, or choose a new folder")
        lock_output_folder(self.path, hint='Choose a folder you can write to.', clean=False)
        self.previous = self._read_manifest(self.path) or {}  # another export may have ended
        self.check_plan(planned)
        if self.previous:
            self._remove_partials()
        for folder in {os.path.dirname(p) for p in planned} - {''}:
            os.makedirs(os.path.join(self.path, folder), exist_ok=True)
        planned_set = set(planned)
        stale = [p for p in self.previous if p not in planned_set and self.is_ours(p)]
        self._write_manifest({p: self._pending(p) for p in list(planned) + stale})
        self._journal = open_no_follow(os.path.join(self.path, JOURNAL),
                                       os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
        for relative in stale:
            os.remove(os.path.join(self.path, relative))

    def _pending(self, relative):
        """The manifest entry of a file about to be written or removed: the size and hash of
        the file of ours there now, if any."""
        path = os.path.join(self.path, relative)
        if not self.is_ours(relative):
            return {'pending': True}
        return {'pending': True, 'size': os.path.getsize(path), 'sha256': file_digest(path)}

    def write(self, relative, data):
        """Write bytes to a planned file (a temporary file renamed over it: a link in its place
        is replaced, never followed; the user's umask applies) and record its size and hash,
        in the journal before the rename."""
        path = os.path.join(self.path, relative)
        entry = {'size': len(data), 'sha256': hashlib.sha256(data).hexdigest()}
        fd, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.partial-')
        try:
            os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp's 0600 is not the user's choice
            with os.fdopen(fd, 'wb') as f:
                f.write(data)
            if self._journal is not None:
                line = json.dumps([relative, entry['size'], entry['sha256']]) + '\n'
                with self._journal_lock:
                    os.write(self._journal, line.encode('utf-8'))
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
        self.written[relative] = entry
        return path

    def write_text(self, relative, text):
        return self.write(relative, text.encode('utf-8'))

    def keep(self, relative):
        """Keep a file of the earlier export, unchanged, as this export's (it would be written
        identical: a thumbnail of the same image); False where it cannot be kept."""
        entry = self.previous.get(relative)
        if not isinstance(entry, dict) or 'sha256' not in entry or not self.is_ours(relative):
            return False
        self.written[relative] = entry
        return True

    def finish(self):
        """The manifest of what this export wrote: the next export replaces only these."""
        self._write_manifest(self.written)
        self._close_journal()
        os.remove(os.path.join(self.path, JOURNAL))

    def _close_journal(self):
        if self._journal is not None:
            os.close(self._journal)
            self._journal = None

    def release(self):
        self._close_journal()
        release_output_lock(self.path)

    def _remove_partials(self):
        """The temporary files that a killed export of ours left in the folder, in its
        thumbs/ or prototypes/ (not through a link)."""
        for sub in ('', 'thumbs', 'prototypes'):
            folder = os.path.join(self.path, sub)
            if os.path.realpath(folder) != os.path.join(self.real, sub).rstrip(os.sep):
                continue
            for name in os.listdir(folder) if os.path.isdir(folder) else []:
                path = os.path.join(folder, name)
                if PARTIAL.fullmatch(name) and os.path.isfile(path) and not os.path.islink(path):
                    os.remove(path)

    def _write_manifest(self, files):
        manifest = {'written_by': WRITTEN_BY, 'files': dict(sorted(files.items()))}
        self.write(MANIFEST, json.dumps(manifest, indent=1).encode('utf-8'))
        del self.written[MANIFEST]
