"""Hash a user's image folder before and after a case: nothing in it may change."""
import hashlib
import os


def folder_hash(folder):
    """{relative path: sha256 of the content} of every file under folder."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, 'rb') as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out
