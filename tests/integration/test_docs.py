"""The documentation stays true to the binary and the sources: every flag of
`inferd --help` is in docs/configuration.md with its environment variable and
default (and nothing else is), every metric family the sources write is in
docs/operations.md, and every relative link between the Markdown files
resolves (file and #anchor)."""
import re
import subprocess

from support import REPO_ROOT, inferd_binary

DOCS = REPO_ROOT / "docs"


def help_flags():
    """{flag: (default, env)} from `inferd --help`."""
    out = subprocess.run([str(inferd_binary()), "--help"], capture_output=True, text=True,
                         timeout=10).stdout
    rows = re.findall(r"^  --([a-z0-9-]+) .*\n\s+\(default: (.*?); env (INFERD_[A-Z0-9_]+)\)$",
                      out, re.M)
    assert len(rows) > 20, out
    return {flag: (default, env) for flag, default, env in rows}


def doc_flags():
    """{flag: (default, env)} from the flags table of docs/configuration.md."""
    rows = {}
    for line in (DOCS / "configuration.md").read_text().splitlines():
        m = re.match(r"^\| `--([a-z0-9-]+)` \| `(INFERD_[A-Z0-9_]+)` \| `?([^|`]*?)`? \|", line)
        if m:
            rows[m.group(1)] = (m.group(3), m.group(2))
    return rows


def test_configuration_page_matches_help():
    want, got = help_flags(), doc_flags()
    assert sorted(got) == sorted(want), (sorted(set(want) - set(got)), sorted(set(got) - set(want)))
    wrong = {f: (got[f], want[f]) for f in want if got[f] != want[f]}
    assert not wrong, f"docs/configuration.md (default, env) differ from --help: {wrong}"


def test_operations_page_lists_every_metric():
    written = set()
    for src in (REPO_ROOT / "src").glob("*.c"):
        written |= set(re.findall(r'"(inferd_[a-z_]+)', src.read_text()))
    assert "inferd_requests_total" in written, written
    page = (DOCS / "operations.md").read_text()
    documented = set(re.findall(r"^\| `(inferd_[a-z_]+)`(?:, `(inferd_[a-z_]+)`)?", page, re.M))
    documented = {name for pair in documented for name in pair if name}
    assert written == documented, (sorted(written - documented), sorted(documented - written))


def anchors(path):
    """GitHub's anchors for a Markdown file's headings."""
    out = set()
    for line in path.read_text().splitlines():
        m = re.match(r"^#{1,6} (.*)", line)
        if m:
            text = m.group(1).strip().lower()
            text = re.sub(r"[^\w\- ]", "", text)
            out.add(text.replace(" ", "-"))
    return out


def test_markdown_links_resolve():
    files = [REPO_ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    broken = []
    for md in files:
        text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # an address elsewhere
            path, _, anchor = target.partition("#")
            dest = (md.parent / path).resolve() if path else md
            if not dest.exists():
                # pages another branch adds (docs/deploy-*.md) may not be here yet
                if not re.fullmatch(r"(docs/)?deploy-(swarm|kubernetes)\.md", path):
                    broken.append(f"{md.name}: {target}")
                continue
            if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{md.name}: {target}")
    assert not broken, broken
