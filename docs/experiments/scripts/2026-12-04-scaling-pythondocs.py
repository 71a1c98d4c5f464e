"""(Run from the folder to hold pythondocs.jsonl, after `apt-get download python3.11-doc` and
`dpkg-deb -x python3.11-doc_*.deb x` there; the site-packages path is this machine's Python 3.11.7.)
English prose no one here wrote, large enough that a study reads no token twice: the Python 3.11
documentation (Debian's python3.11-doc, its reStructuredText sources, one record per page) and the
docstrings of numpy, scipy and sympy (one record per module, tests left out). The standard library's
own docstrings are left out: the documentation says the same things."""
import ast, json, pathlib
docs = pathlib.Path("x/usr/share/doc/python3.11/html/_sources")
site = pathlib.Path("/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages")
n = 0
with open("pythondocs.jsonl", "w") as f:
    for path in sorted(docs.rglob("*.rst.txt")):
        text = path.read_text(encoding="utf-8")
        if len(text) > 200:
            f.write(json.dumps({"text": text, "page": str(path.relative_to(docs))}) + "\n")
            n += len(text)
    for pkg in ("numpy", "scipy", "sympy"):
        for path in sorted((site / pkg).rglob("*.py")):
            rel = path.relative_to(site).parts
            if "tests" in rel or "_vendor" in rel or "testing" in rel:
                continue
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError, RecursionError):
                continue
            found = [ast.get_docstring(node) for node in ast.walk(tree)
                     if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
            text = "\n\n".join(d for d in found if d and len(d) > 40)
            if len(text) > 200:
                f.write(json.dumps({"text": text, "module": ".".join(rel)[:-3]}) + "\n")
                n += len(text)
print(n)
