#!/usr/bin/python3
"""dockerfile_bases.py - the base images a `docker build` will need, read
from the Dockerfile itself, so that the images a machine without Docker Hub
must make (deploy/base-images.sh) can never fall behind the Dockerfiles.

    deploy/dockerfile_bases.py [--suites] BUILD...

BUILD is DOCKERFILE[:ARG=VALUE[,ARG=VALUE...]], e.g. Dockerfile:VARIANT=cpu.
Only the stages BuildKit builds count: the last stage and, recursively, the
stages it starts FROM or copies from (COPY --from, RUN --mount=from=). ARGs
declared before the first FROM are expanded with their defaults, or the
values given. Prints one image per line (sorted, no duplicates); with
--suites, the Debian suites of the debian:<suite>-slim images instead, and
fails when a build needs any other image (base-images.sh makes only those).
"""
import re
import sys

FROM_RE = re.compile(r"^FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?\s*$", re.I)
ARG_RE = re.compile(r"^ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?$", re.I)
COPY_FROM_RE = re.compile(r"--from=([^\s]+)", re.I)
MOUNT_FROM_RE = re.compile(r"--mount=\S*\bfrom=([^,\s]+)", re.I)
VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
DEBIAN_SLIM = re.compile(r"^(?:docker\.io/)?(?:library/)?debian:([a-z]+)-slim$")


def logical_lines(text):
    """Dockerfile instructions: comments dropped, continuations joined."""
    out, cur = [], ""
    for raw in text.splitlines():
        s = raw.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if s.startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        out.append((cur + s).strip())
        cur = ""
    if cur.strip():
        out.append(cur.strip())
    return out


def expand(s, env):
    def sub(m):
        name = m.group(1) or m.group(3)
        val = env.get(name, "")
        if m.group(2) is not None and not val:
            return m.group(2)
        return val
    return VAR_RE.sub(sub, s)


def stages(text, args):
    """[(image_or_stage_ref, name, deps)] in order, images expanded."""
    env, out, seen_from = {}, [], False
    for line in logical_lines(text):
        m = ARG_RE.match(line)
        if m and not seen_from:
            name, default = m.group(1), m.group(2)
            if default is not None:
                default = default.strip().strip('"').strip("'")
            env[name] = args.get(name, default if default is not None else "")
            continue
        m = FROM_RE.match(line)
        if m:
            seen_from = True
            out.append([expand(m.group(1), env), (m.group(2) or "").lower(), set()])
            continue
        if out:
            for rx in (COPY_FROM_RE, MOUNT_FROM_RE):
                for ref in rx.findall(line):
                    out[-1][2].add(expand(ref, env).lower())
    for name in args:
        if name not in env:
            raise SystemExit(f"dockerfile_bases: no ARG {name} before the first FROM")
    return out


def bases(dockerfile, args, target=None):
    st = stages(open(dockerfile, encoding="utf-8").read(), args)
    if not st:
        raise SystemExit(f"dockerfile_bases: {dockerfile}: no FROM")
    by_name = {name: i for i, (_, name, _) in enumerate(st) if name}
    images, todo, done = set(), [by_name[target] if target else len(st) - 1], set()
    while todo:
        i = todo.pop()
        if i in done:
            continue
        done.add(i)
        image, _, deps = st[i]
        for ref in [image.lower()] + sorted(deps):
            if ref in by_name and by_name[ref] < i:
                todo.append(by_name[ref])      # an earlier stage
            elif ref.isdigit() and int(ref) < i:
                todo.append(int(ref))          # an earlier stage by number
            elif ref != "scratch":
                images.add(image if ref == image.lower() else ref)
    return images


def parse_build(spec):
    path, _, rest = spec.partition(":")
    args = dict(kv.split("=", 1) for kv in rest.split(",") if kv)
    return path, args


def main(argv):
    suites = argv[:1] == ["--suites"]
    builds = argv[1:] if suites else argv
    if not builds:
        print(__doc__, file=sys.stderr)
        return 2
    images = set()
    for spec in builds:
        images |= bases(*parse_build(spec))
    if not suites:
        print("\n".join(sorted(images)))
        return 0
    out, bad = set(), []
    for image in images:
        m = DEBIAN_SLIM.match(image)
        if m:
            out.add(m.group(1))
        else:
            bad.append(image)
    if bad:
        print("dockerfile_bases: these builds need images that deploy/base-images.sh cannot "
              f"make (only debian:<suite>-slim): {', '.join(sorted(bad))}", file=sys.stderr)
        return 1
    print(" ".join(sorted(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
