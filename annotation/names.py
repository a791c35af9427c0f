"""Cluster names: the defaults, a user's names.yml, and writing one that reads back identically.

Names come from a user's YAML file (cluster id -> name), else from the classes the clusters are
matched to when labels exist, else 'cluster K'. The gallery's "Save names" writes the same
format as write_names (gallery.js: yamlString mirrors yaml_string).
"""
from utils.config import parse_yaml
from utils.errors import UserError
from utils.text import ascii_number, excerpt, is_blank, visible_text
from utils.user_files import read_user_file

NAMES_HEADER = ("# Cluster id: name. Edit the names (or delete lines), then pass this file with\n"
                "# --names to eval.py --annotate; ids must be clusters of the model.\n")
# Escaped inside the double quotes: what YAML would read differently or refuse in a file (line
# breaks it folds, C0/C1 controls, BOM, non-characters), and lone surrogates.
_ESCAPES = {'"': '\\"', '\\': '\\\\', '\n': '\\n', '\t': '\\t', '\r': '\\r'}


class AnnotationError(UserError, ValueError):
    """A names or corrections file, or an output folder, the export cannot use; the message
    names it."""


def default_names(num_clusters, matched=None):
    """'cluster K', or the matched class name where `matched` (cluster -> name or None) has one;
    matched clusters the model does not have are ignored (a folder may hold more classes)."""
    names = {k: f"cluster {k}" for k in range(num_clusters)}
    names.update({k: visible_text(name) for k, name in (matched or {}).items()
                  if name is not None and 0 <= k < num_clusters})
    return names


def _needs_escape(code):
    return (code < 0x20 or 0x7f <= code <= 0x9f or code in (0x2028, 0x2029, 0xfeff)
            or 0xd800 <= code <= 0xdfff or code in (0xfffe, 0xffff))


def yaml_string(text):
    """`text` as a YAML double-quoted scalar that yaml.safe_load reads back as exactly `text`."""
    out = []
    for char in text:
        code = ord(char)
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif _needs_escape(code):
            out.append(f'\\u{code:04x}')
        else:
            out.append(char)
    return '"' + ''.join(out) + '"'


def names_yaml(names):
    """The text of a names.yml: only the header comment and one `id: "name"` line per cluster."""
    return NAMES_HEADER + ''.join(f"{k}: {yaml_string(names[k])}\n" for k in sorted(names))


def _cluster_id(key):
    """An int cluster id from a YAML key (3 or '3'); None for anything else."""
    if isinstance(key, bool):
        return None
    if isinstance(key, int):
        return key
    if isinstance(key, str):
        return ascii_number(key.strip())  # '²'.isdigit() is True, int('²') fails
    return None


def _load_yaml(path):
    return parse_yaml(read_user_file(path, 'names file', AnnotationError), path, AnnotationError,
                      'a names file is YAML text')


def read_names(path, num_clusters):
    """{cluster id: name} from a user's YAML mapping; clusters left out keep their default name.
    Ids must be clusters of the model (0 .. num_clusters-1); names text that is not blank, kept
    exactly as written (quoted leading spaces included)."""
    content = _load_yaml(path)
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise AnnotationError(f"{path}: must map cluster ids to names, one per line like "
                              f"'3: cats', got {type(content).__name__}")
    names = {}
    for key, value in content.items():
        cluster = _cluster_id(key)
        if cluster is None or not 0 <= cluster < num_clusters:
            raise AnnotationError(f"{path}: unknown cluster id {excerpt(key)}: the model has "
                                  f"clusters 0 to {num_clusters - 1}")
        if cluster in names:
            raise AnnotationError(f"{path}: cluster {cluster} is named twice")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) \
                or is_blank(str(value)):
            raise AnnotationError(f"{path}: the name of cluster {cluster} must be non-empty "
                                  f"text, got {excerpt(value)}")
        names[cluster] = visible_text(value)
    return names
