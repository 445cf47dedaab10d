"""docs/architecture.md's layering, enforced: imports point down, library layers never import Ray.

    0 foundation   errors, schema, storage, config, kuberay_rules, kueue_rules
    1 files        images, pairs (pair datasets read with pyarrow), resume
    2 library      models, p2p, text, eval, viz                      (never import Ray)
    3 stages       manifest (Ray Data I/O), runtime, progress, nodes, metrics, corpora, stages, testing
    4 jobs         pipeline, submit, reader_study
    5 cli          cli, __main__

A module may import modules of its own layer or below, at the top of the file or inside a
function. Column names are defined in schema.py only.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pairaug_ray"

LAYERS = [
    [
        "errors",
        "schema",
        "storage",
        "config",
        "kuberay_rules",
        "kueue_rules",
        "",
    ],  # "" is the package's __init__
    ["images", "pairs", "resume"],
    ["models", "p2p", "text", "eval", "viz"],
    ["manifest", "runtime", "progress", "nodes", "metrics", "corpora", "stages", "testing"],
    ["pipeline", "submit", "reader_study"],
    ["cli", "__main__"],
]
RAY_FREE_LAYERS = 3  # layers 0, 1 and 2
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_part(module: str) -> str:
    """pairaug_ray.pipeline.train.job -> 'pipeline'; pairaug_ray -> ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every absolute import in the file, function-level ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from pairaug_ray import schema` imports the module pairaug_ray.schema
            if node.module == "pairaug_ray":
                found += [(node.lineno, f"pairaug_ray.{a.name}") for a in node.names]
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    missing = {top_part(module_name(p)) for p in MODULES} - set(LAYER_OF)
    assert not missing, (
        f"put {sorted(missing)} into a layer of tests/test_architecture.py and docs/architecture.md"
    )


def violations() -> list[str]:
    found = []
    for path in MODULES:
        mod = module_name(path)
        layer = LAYER_OF[top_part(mod)]
        for line, imported in imports_of(path):
            where = f"{path.relative_to(PACKAGE.parent)}:{line}"
            if layer < RAY_FREE_LAYERS and (imported == "ray" or imported.startswith("ray.")):
                found.append(
                    f"{where} imports {imported}: layer {layer} ({top_part(mod) or 'pairaug_ray'}) never imports Ray"
                )
            if imported.startswith("pairaug_ray.") or imported == "pairaug_ray":
                other = top_part(imported)
                if other in LAYER_OF and LAYER_OF[other] > layer:
                    found.append(
                        f"{where} imports {imported} (layer {LAYER_OF[other]}) from layer {layer}: imports point down"
                    )
    return found


def test_imports_point_down_and_the_library_never_imports_ray():
    assert violations() == []


def test_the_check_catches_a_violation(tmp_path, monkeypatch):
    """The rule can fail: a Ray import planted in models/ and an upward import in text/ are both found."""
    bad_models = PACKAGE / "models" / "_planted_for_test.py"
    bad_text = PACKAGE / "text" / "_planted_for_test.py"
    monkeypatch.setattr(sys.modules[__name__], "MODULES", [*MODULES, bad_models, bad_text])
    real_read = Path.read_text

    def read(self, *a, **k):
        if self == bad_models:
            return "import ray\n"
        if self == bad_text:
            return "def f():\n    from pairaug_ray.pipeline.runner import run_resumable\n"
        return real_read(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", read)
    found = violations()
    assert any("models/_planted_for_test.py:1 imports ray" in v for v in found), found
    assert any("text/_planted_for_test.py:2 imports pairaug_ray.pipeline.runner" in v for v in found), found


def test_the_ray_free_layers_do_not_load_ray_at_all():
    """Dynamically too: importing every module of layer 0, then of layer 1, then of layer 2 (and what
    those import, third-party packages included) leaves Ray out of sys.modules after each."""
    code = "import sys\n"
    for layer in range(RAY_FREE_LAYERS):
        modules = [module_name(p) for p in MODULES if LAYER_OF[top_part(module_name(p))] == layer]
        code += "".join(f"import {m}\n" for m in modules)
        code += (
            "bad = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))\n"
            f"assert not bad, ('layer {layer}', bad[:5])\n"
        )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PACKAGE.parent)


def test_column_names_are_defined_in_the_schema_only():
    """No module but schema.py binds a module-level name to a string that is a manifest column name."""
    from pairaug_ray import schema

    columns = {
        v for k, v in vars(schema).items() if k.isupper() and isinstance(v, str) and k not in ("ORIGIN_REAL",)
    } & set(schema.CORE_COLUMNS + tuple(schema.OPTIONAL_FIELDS) + (schema.EMBED_ERROR,))
    found = []
    for path in MODULES:
        if path.name == "schema.py":
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign):
                values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
                for v in values:
                    if isinstance(v, ast.Constant) and v.value in columns:
                        found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} defines {v.value!r}")
    assert found == [], "use the constants of pairaug_ray/schema.py: " + "; ".join(found)
