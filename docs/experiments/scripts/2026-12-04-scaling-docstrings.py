"""(Run from the folder to hold docstrings.jsonl; the paths are this machine's pyenv Python 3.11.7.)
English prose no one here wrote: the docstrings of Python's standard library and of numpy, scipy
and sympy (Python 3.11's), one record per module, tests left out."""
import ast, json, pathlib, sys
lib = pathlib.Path("/root/.pyenv/versions/3.11.7/lib/python3.11")
roots = [(lib, ("site-packages", "test", "idlelib", "lib2to3"))] + [(lib / "site-packages" / p, ()) for p in ("numpy", "scipy", "sympy")]
n = 0
with open("docstrings.jsonl", "w") as f:
    for root, skip in roots:
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(lib).parts
            if (rel[0] in skip) or "tests" in rel or "_vendor" in rel or "testing" in rel:
                continue
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError, RecursionError):
                continue
            docs = [ast.get_docstring(node) for node in ast.walk(tree) if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
            text = "\n\n".join(d for d in docs if d and len(d) > 40)
            if len(text) > 200:
                f.write(json.dumps({"text": text, "module": ".".join(rel)[:-3]}) + "\n")
                n += len(text)
print(n)
