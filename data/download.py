"""Download + checksum of benchmark archives, with errors that say what to do.

torchvision does the work (download_and_extract_archive, check_integrity); this module only turns
its terse failures ("File not found or corrupted.", a bare URLError) into messages that name the
dataset, the folder, the URL, the archive and its md5.
"""
import http.client
import os

from torchvision.datasets.utils import calculate_md5, check_integrity, download_and_extract_archive

from utils.errors import UserError


class DatasetUnavailable(UserError, RuntimeError):
    """A dataset is not on disk and cannot be fetched (offline, download disabled, no URL)."""


class ChecksumError(UserError, RuntimeError):
    """A file's md5 is not the published one: a corrupt or incomplete download."""

    def __init__(self, path, expected, actual):
        self.path, self.expected, self.actual = path, expected, actual
        super().__init__(f"checksum mismatch for {path}: expected md5 {expected}, got {actual}. "
                         f"The file is corrupt or incomplete; rerun to fetch it again, and if it "
                         f"persists delete it and download it by hand.")


def archive_unavailable(name, folder, url, archive, md5, reason):
    """The error for a dataset whose archive could not be fetched."""
    lines = [f"{name} is not in {folder} and could not be downloaded.",
             f"  url:     {url}",
             f"  archive: {archive} (md5 {md5})",
             f"  reason:  {reason}"]
    local = os.path.join(folder, archive)
    if os.path.isfile(local):
        lines.append(f"  note:    {local} is there but its md5 is {calculate_md5(local)} "
                     f"(an incomplete or corrupt copy)")
    lines.append(f"Download {archive} (md5 {md5}) from {url} and put it in {folder}, then rerun.")
    return DatasetUnavailable('\n'.join(lines))


def file_problem(path, md5):
    """Why `path` does not pass the check against `md5`, or None when it does."""
    if not os.path.isfile(path):
        return f"{path} is missing"
    if not check_integrity(path, md5):
        return f"{path} has md5 {calculate_md5(path)}, expected {md5}"
    return None


def verify_files(folder, files):
    """Raise ChecksumError for the first of `files` ((path relative to folder, md5) pairs) whose
    md5 does not match; a missing file is a DatasetUnavailable."""
    for relative, md5 in files:
        path = os.path.join(folder, relative)
        if not os.path.isfile(path):
            raise DatasetUnavailable(f"{path} is missing after extracting the archive in {folder}")
        if not check_integrity(path, md5):
            raise ChecksumError(path, md5, calculate_md5(path))


def fetch_archive(name, folder, url, archive, md5):
    """Download (unless a copy with the right md5 is already in folder) and extract `archive`."""
    try:
        download_and_extract_archive(url, folder, filename=archive, md5=md5)
    # RecursionError (too many redirects) is a RuntimeError, so it must be caught first
    except (OSError, http.client.HTTPException, RecursionError) as error:
        raise archive_unavailable(name, folder, url, archive, md5, error) from error
    except RuntimeError as error:
        # torchvision's "File not found or corrupted.": the downloaded archive failed its md5
        local = os.path.join(folder, archive)
        if not os.path.isfile(local):
            raise archive_unavailable(name, folder, url, archive, md5, error) from error
        raise ChecksumError(local, md5, calculate_md5(local)) from error


def ensure_dataset(name, folder, url, archive, md5, files, download=True):
    """Make sure `files` ((path relative to folder, md5) pairs) are in folder and intact,
    downloading and extracting `archive` when they are not."""
    problems = [p for p in (file_problem(os.path.join(folder, f), m) for f, m in files) if p]
    if not problems:
        return
    if not download:
        reason = f"download=False and {problems[0]}"
        raise archive_unavailable(name, folder, url, archive, md5, reason)
    fetch_archive(name, folder, url, archive, md5)
    verify_files(folder, files)


def open_torchvision_dataset(tv_class, name, root, files, download=True, **kwargs):
    """`tv_class(root, download=False, **kwargs)`, fetching its archive first when torchvision's
    own md5 check fails. Trying first hashes intact files once rather than twice (STL-10: 3 GB).
    The URL and md5s are read from tv_class at call time, so they can be patched."""
    try:
        return tv_class(root, download=False, **kwargs)
    except RuntimeError:  # torchvision's "Dataset not found or corrupted"
        pass
    ensure_dataset(name, root, tv_class.url, tv_class.filename, tv_class.tgz_md5, files,
                   download=download)
    return tv_class(root, download=False, **kwargs)
