"""The house rules, checked: the client library imports only httpx and the stdlib, dependencies point one way
(comfy/cli -> core -> runflow), only nodes/comfy touches ComfyUI, and no module grows past ~350 lines."""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NODES = ROOT / "nodes"
COMFYUI_MODULES = {"folder_paths", "server", "comfy", "comfy_execution", "comfy_api", "execution", "nodes"}
MAX_LINES = 350


def imports(path: Path) -> list[tuple[int, str]]:
    """(level, module) for every import in a file; level 0 = absolute."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(0, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.level, node.module or ""))
    return out


def modules(folder: str) -> list[Path]:
    return sorted((NODES / folder).rglob("*.py"))


def test_client_library_imports_only_httpx_stdlib_and_itself():
    for path in modules("runflow"):
        for level, name in imports(path):
            if level:
                assert level == 1, f"{path.name} reaches outside nodes/runflow: {'.' * level}{name}"
                continue
            top = name.split(".")[0]
            assert top == "httpx" or top in sys.stdlib_module_names or top == "__future__", \
                f"{path.name} imports {name}: the client library may use httpx and the stdlib only"


@pytest.mark.parametrize("folder,allowed", [("core", {"runflow"}), ("runflow", set()),
                                            ("sandbox", {"runflow"})])
def test_dependencies_point_one_way(folder, allowed):
    for path in modules(folder):
        for level, name in imports(path):
            if level >= 2:
                sibling = name.split(".")[0]
                assert sibling in allowed, f"nodes/{folder}/{path.name} imports nodes/{sibling}"
            if level == 0:
                assert name.split(".")[0] not in COMFYUI_MODULES, f"nodes/{folder}/{path.name} imports {name}"


def test_sandbox_uses_only_the_contract_of_the_client_library():
    for path in modules("sandbox"):
        for level, name in imports(path):
            if level >= 2:
                assert name == "runflow.contract", f"sandbox/{path.name} imports {name}"


def test_no_module_is_a_room_of_its_own():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in NODES.rglob("*.py")}
    big = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them along a real seam): {big}"
