"""Layers point down (DESIGN.md): utils/ is the ground floor; data/, models/ and losses/ use only
it (and themselves); annotation/ may use those; the scripts use everything."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
OURS = {'utils', 'data', 'models', 'losses', 'annotation'}
ALLOWED = {
    'utils': {'utils'},
    'data': {'data', 'utils'},
    'models': {'models', 'utils'},
    'losses': {'losses', 'utils'},
    'annotation': {'annotation', 'data', 'models', 'losses', 'utils'},
}


def imported_packages(path):
    """Our top-level packages that a module imports, anywhere in it (function bodies too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split('.')[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split('.')[0])
    return found & OURS


@pytest.mark.parametrize('package', sorted(ALLOWED))
def test_package_imports_only_the_layers_below(package):
    wrong = {str(path.relative_to(ROOT)): sorted(imported_packages(path) - ALLOWED[package])
             for path in sorted((ROOT / package).rglob('*.py'))}
    assert {path: found for path, found in wrong.items() if found} == {}
    assert len(wrong) >= 2  # the package exists and was read
