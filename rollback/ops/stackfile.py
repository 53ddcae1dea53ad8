"""Stack changes as reviewable commits: round-trip edits of ``environments/Pulumi.<stack>.yaml``.

Reverts, promotions and finalizations are changes to the committed stack file, applied later by
``pulumi up`` (in CI, after review). So the edit must look like a person made it: comments,
key order, quoting, flow/block style and indentation stay as they were, only the release lines
change. ruamel.yaml's round-trip mode keeps all of that; the indentation is guessed from the file.

Writes are atomic (a temporary file in the same directory, then ``os.replace``), so a crash or a
refused validation never leaves a half-written stack file.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.util import load_yaml_guess_indent

from rollback.runtime.errors import ConfigError, GateError, MLRollbackError, NotFoundError

PROJECT = "mlrollback"
ENDPOINTS_KEY = f"{PROJECT}:endpoints"


@dataclass(frozen=True)
class Release:
    """Which version plays which role on one endpoint (the ``release`` block)."""

    stable: str
    candidate: str | None = None
    shadow: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"stable": self.stable, "candidate": self.candidate, "shadow": self.shadow}


def _yaml(indent: int, block_seq_indent: int) -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap long lines (image URIs)
    yaml.indent(mapping=indent, sequence=indent, offset=block_seq_indent)
    # Write an explicit null ("candidate: null") rather than an empty value: clearer in review.
    yaml.representer.add_representer(
        type(None), lambda rep, _data: rep.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return yaml


class StackDocument:
    """A stack file loaded for round-trip editing; :meth:`render` gives the edited text."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.original = text
        self.text = text
        try:
            _data, indent, bsi = load_yaml_guess_indent(text)
        except Exception as exc:  # ruamel raises several parser error types
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        self._yaml = _yaml(indent or 2, bsi or 0)
        self.data = self._yaml.load(text)
        if not isinstance(self.data, CommentedMap) or not isinstance(self.data.get("config"), dict):
            raise ConfigError(f"{path}: expected a top-level 'config:' mapping (Pulumi stack settings)")

    @classmethod
    def load(cls, path: Path) -> StackDocument:
        """Load ``path``; a missing file is a NotFoundError naming it."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NotFoundError(f"{path}: stack file not found") from None
        return cls(path, text)

    # -- reading ---------------------------------------------------------------------------------

    @property
    def config(self) -> CommentedMap:
        return self.data["config"]

    def setting(self, key: str, default: Any = None) -> Any:
        """A ``mlrollback:<key>`` (or fully qualified ``ns:key``) setting, plain Python values."""
        full = key if ":" in key else f"{PROJECT}:{key}"
        return _plain(self.config.get(full, default))

    def endpoints(self) -> list[CommentedMap]:
        eps = self.config.get(ENDPOINTS_KEY)
        if not isinstance(eps, list):
            raise ConfigError(f"{self.path}: {ENDPOINTS_KEY} must be a list of endpoints")
        return eps

    def endpoint_names(self) -> list[str]:
        return [str(e.get("name")) for e in self.endpoints()]

    def endpoint(self, name: str) -> CommentedMap:
        """The endpoint block called ``name``; unknown names list the known ones."""
        for ep in self.endpoints():
            if ep.get("name") == name:
                return ep
        known = ", ".join(self.endpoint_names()) or "none"
        raise NotFoundError(f"{self.path}: endpoint {name!r} is not declared (known: {known})")

    def _index(self, name: str) -> int:
        return [e.get("name") for e in self.endpoints()].index(name)

    def release(self, name: str) -> Release:
        rel = self.endpoint(name).get("release")
        if not isinstance(rel, dict) or not rel.get("stable"):
            raise ConfigError(
                f"{self.path}: {ENDPOINTS_KEY}[{self._index(name)}].release.stable is missing; "
                "every endpoint needs a stable version"
            )
        return Release(str(rel["stable"]), _opt(rel.get("candidate")), _opt(rel.get("shadow")))

    def versions(self, name: str) -> dict[str, dict[str, Any]]:
        """The version catalog of an endpoint as plain dicts."""
        return {str(k): _plain(v) or {} for k, v in (self.endpoint(name).get("versions") or {}).items()}

    def strategy(self, name: str) -> dict[str, Any]:
        return _plain(self.endpoint(name).get("strategy")) or {}

    # -- editing ---------------------------------------------------------------------------------
    #
    # Edits are made on the text, at the positions ruamel reports for each node, then the text is
    # parsed again. Re-dumping the whole document would re-indent it and move comments; a
    # surgical edit changes exactly the scalars that changed and nothing else.

    def set_release(self, name: str, release: Release) -> None:
        """Make ``release`` the endpoint's release; keys keep their place, comments stay put."""
        versions = self.versions(name)
        where = f"{self.path}: {ENDPOINTS_KEY}[{self._index(name)}].release"
        for role, version in release.as_dict().items():
            if version is not None and version not in versions:
                known = ", ".join(versions) or "none"
                raise ConfigError(
                    f"{where}.{role}: {version!r} is not in the version catalog (known: {known}); "
                    "add it under versions first"
                )
        before = self.text
        for role, version in release.as_dict().items():
            rel = self.endpoint(name).get("release")
            if not isinstance(rel, dict):
                raise ConfigError(f"{where}: must be a mapping with at least 'stable'")
            if role in rel:
                if _opt(rel[role]) != version:
                    self._replace_value(rel, role, version)
            elif version is not None:
                self._add_key(rel, role, _scalar(version))
        # A text edit in an unusual layout could land somewhere else and still parse: read it back.
        if self.release(name) != release:
            self._reparse(before)
            raise ConfigError(
                f"{where}: cannot edit this layout safely (the edit did not read back as "
                f"{release.as_dict()}); set the release by hand"
            )

    def add_version(self, name: str, version: str, spec: dict[str, Any]) -> bool:
        """Add ``version`` (as a one-line flow mapping) to the catalog unless present; True when added."""
        catalog = self.endpoint(name).get("versions")
        if not isinstance(catalog, dict):
            raise ConfigError(f"{self.path}: {ENDPOINTS_KEY}[{self._index(name)}].versions must be a mapping")
        if version in catalog:
            return False
        before = self.text
        self._add_key(catalog, version, _flow(spec))
        # e.g. a flow mapping that closes on a later line: the '}' found may be a nested one.
        if self.versions(name).get(version) != spec:
            self._reparse(before)
            raise ConfigError(
                f"{self.path}: {ENDPOINTS_KEY}[{self._index(name)}].versions: cannot locate where to add "
                f"{version!r} in this layout; add it to the version catalog by hand and run again"
            )
        return True

    def render(self) -> str:
        """The edited stack file text."""
        return self.text

    def _reparse(self, text: str) -> None:
        """Take the edited ``text``; an edit that broke the YAML is refused, the document kept as it was."""
        try:
            data = self._yaml.load(text)
        except Exception as exc:  # ruamel raises several parser/scanner error types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"{self.path}: cannot locate where to edit in this layout (the edit would not parse: "
                f"{first}); make the change by hand"
            ) from None
        self.text = text
        self.data = data

    def _replace_value(self, mapping: CommentedMap, key: str, value: str | None) -> None:
        lines = self.text.splitlines(keepends=True)
        new = "null" if value is None else _scalar(value)
        if mapping[key] is None:  # `key:` with nothing, `~` or `null` after it
            line, col = mapping.lc.key(key)
            match = re.compile(rf"{re.escape(str(key))}\s*:(\s*)(null|Null|NULL|~)?").match(lines[line], col)
            if match is None:
                raise ConfigError(f"{self.path}:{line + 1}: cannot locate the value of {key!r} to edit it")
            if match.group(2):
                start, end = match.span(2)
            else:  # insert right after the colon; the spaces before a comment absorb the growth
                start = end = match.start(1)
                new = " " + new
        else:
            line, col = mapping.lc.value(key)
            match = _SCALAR_RE.match(lines[line], col)
            if match is None or _unquote(match.group()) != str(mapping[key]):
                raise ConfigError(f"{self.path}:{line + 1}: cannot locate the value of {key!r} to edit it")
            start, end = match.span()
        text = lines[line]
        rest = text[end:]
        # Keep a trailing comment in its column when there is room for the longer value.
        spaces = len(rest) - len(rest.lstrip(" "))
        if rest.lstrip(" ").startswith("#"):
            grow = len(new) - (end - start)
            rest = " " * max(1, spaces - grow) + rest.lstrip(" ")
        lines[line] = text[:start] + new + rest
        self._reparse("".join(lines))

    def _add_key(self, mapping: CommentedMap, key: str, value_text: str) -> None:
        lines = self.text.splitlines(keepends=True)
        key_text = _scalar(key)
        if mapping.fa.flow_style():
            line, col = _last_position(mapping)
            close = lines[line].find("}", col)
            if close < 0:
                raise ConfigError(f"{self.path}:{line + 1}: cannot find the end of the flow mapping")
            sep = ", " if len(mapping) else ""
            lines[line] = lines[line][:close] + f"{sep}{key_text}: {value_text}" + lines[line][close:]
        else:
            first = next(iter(mapping))
            _, key_col = mapping.lc.key(first)
            last_line, _ = _last_position(mapping)
            newline = "\r\n" if lines[last_line].endswith("\r\n") else "\n"
            if not lines[last_line].endswith(("\n", "\r")):
                lines[last_line] += newline
            lines.insert(last_line + 1, " " * key_col + f"{key_text}: {value_text}{newline}")
        self._reparse("".join(lines))

    def diff(self, label: str | None = None) -> str:
        """Unified diff of the file on disk versus the edited document (empty when unchanged).

        ``label`` names the file in the headers (e.g. relative to the project root, as git shows it).
        """
        name = label or str(self.path)
        return "".join(
            difflib.unified_diff(
                self.original.splitlines(keepends=True),
                self.text.splitlines(keepends=True),
                fromfile=f"a/{name}",
                tofile=f"b/{name}",
            )
        )


_SCALAR_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\']|\'\')*\'|[^\s,}\]#][^,}\]#]*?(?=\s*(?:[,}\]]|\s#|$))')
_FLOW_SAFE_RE = re.compile(r"^[A-Za-z0-9_./@-][A-Za-z0-9_./:@-]*$")
_SAFE = YAML(typ="safe", pure=True)


def _unquote(token: str) -> str:
    return str(_SAFE.load(f"k: {token}")["k"])


def _scalar(value: str) -> str:
    """``value`` as a YAML scalar that reads back as the same string (quoted only when needed)."""
    try:
        plain_ok = _SAFE.load(f"k: {value}") == {"k": value}
    except Exception:
        plain_ok = False
    return value if plain_ok else json.dumps(value)


def _flow(spec: dict[str, Any]) -> str:
    """A one-line flow mapping for a version spec (values JSON-quoted only when needed)."""
    parts = []
    for k, v in spec.items():
        if isinstance(v, dict):
            parts.append(f"{_scalar(str(k))}: {_flow(v)}")
        elif isinstance(v, bool | int | float) or v is None:
            parts.append(f"{_scalar(str(k))}: {json.dumps(v)}")
        else:
            text = str(v)
            safe = _FLOW_SAFE_RE.match(text) and _scalar(text) == text
            parts.append(f"{_scalar(str(k))}: {text if safe else json.dumps(text)}")
    return "{" + ", ".join(parts) + "}"


def _last_position(node: Any) -> tuple[int, int]:
    """(line, col) of the last scalar inside ``node``: where its text ends, roughly."""
    best = (node.lc.line, node.lc.col) if hasattr(node, "lc") else (0, 0)
    if isinstance(node, dict):
        for key, value in node.items():
            best = max(best, node.lc.key(key), node.lc.value(key))
            if isinstance(value, dict | list):
                best = max(best, _last_position(value))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            best = max(best, node.lc.item(i))
            if isinstance(value, dict | list):
                best = max(best, _last_position(value))
    return best


def _opt(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _plain(value: Any) -> Any:
    """ruamel's commented containers as plain dicts/lists (for comparisons and JSON)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically, keeping its permission bits.

    The temporary file lives in the same directory so ``os.replace`` is a rename on one file
    system: readers see the old file or the new one, never a mix.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def restore_file(path: Path, previous: bytes) -> None:
    """Put ``path``'s previous bytes back (atomically, mode kept): undo a change that did not happen."""
    write_atomic(path, previous.decode("utf-8"))


class StagedFile:
    """A stack file's new text, written and validated next to it but not yet in place.

    The order a change takes (:func:`rollback.ops.stack_changes.land`) is: :func:`stage` (write a
    temporary file beside the target and validate it as the Pulumi program would), :meth:`replace`
    (one rename), apply, then record. So a refused or unwritable change is never recorded.
    Used as a context manager, the temporary file is removed whatever happens.
    """

    def __init__(self, path: Path, tmp: Path) -> None:
        self.path = path
        self.tmp = tmp

    def replace(self) -> None:
        """Put the new text in place; an OSError becomes one line naming the file."""
        try:
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.discard()
            raise MLRollbackError(
                f"cannot write {self.path}: {exc.strerror or exc}; it is unchanged. Make the file and its "
                "directory writable, then run the command again"
            ) from None

    def discard(self) -> None:
        """Remove the temporary file (a no-op once :meth:`replace` moved it)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)

    def __enter__(self) -> StagedFile:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.discard()


def stage(path: Path, text: str, *, stack: str, hint: str) -> StagedFile:
    """Write ``text`` beside ``path`` and validate it with ``infra.config`` (what the program runs).

    Raises MLRollbackError (exit 1) naming the file when it cannot be written (read-only file or
    directory, full disk), and ConfigError (exit 2) listing every problem plus ``hint`` (what to do)
    when the program would reject the new text: in both cases nothing is in place and the temporary
    file is gone. ``path`` itself is only replaced by :meth:`StagedFile.replace`.
    """
    from infra.config import load_stack_file

    def unwritable(why: str) -> MLRollbackError:
        return MLRollbackError(
            f"cannot write {path}: {why}; nothing was changed or recorded. Make the file and its directory "
            "writable, then run the command again"
        )

    if path.exists() and not os.access(path, os.W_OK):
        raise unwritable("the file is read-only")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise unwritable(str(exc.strerror or exc)) from None
    staged = StagedFile(path, Path(name))
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(staged.tmp, path.stat().st_mode & 0o777)
    except OSError as exc:
        staged.discard()
        raise unwritable(str(exc.strerror or exc)) from None
    try:
        load_stack_file(staged.tmp, stack)
    except ConfigError as exc:
        staged.discard()
        problems = str(exc).replace(staged.tmp.name, path.name)
        raise ConfigError(
            f"refused: the change would leave a stack file the Pulumi program rejects, so nothing was "
            f"written or recorded.\n{problems}\n{hint}"
        ) from None
    except BaseException:
        staged.discard()
        raise
    return staged


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=60, check=False
        )
    except OSError as exc:
        raise MLRollbackError(f"--commit needs git ({exc}); drop --commit and commit yourself") from None


def require_clean(root: Path, path: Path) -> None:
    """Before a ``--commit`` rewrite: ``path`` is tracked in a git work tree and has no pending edits.

    The commit must hold exactly what mlrollback changed, not someone's unfinished edit.
    """
    inside = _git(root, "rev-parse", "--is-inside-work-tree")
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        raise MLRollbackError(
            f"--commit: {root} is not in a git work tree; drop --commit and commit yourself"
        )
    pending = _git(root, "status", "--porcelain", "--", str(path))
    if pending.stdout.strip():
        raise GateError(
            f"--commit: {path.name} has uncommitted changes ({pending.stdout.strip()[:2].strip()}); "
            "commit or stash them first, or drop --commit"
        )


def commit_file(root: Path, path: Path, message: str) -> str:
    """Commit only ``path`` with ``message`` (after :func:`require_clean`); return the commit sha."""
    for step in (("add", "--", str(path)), ("commit", "-m", message, "--", str(path))):
        done = _git(root, *step)
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise MLRollbackError(
                f"--commit: `git {step[0]}` failed ({detail[-1] if detail else done.returncode}); "
                f"{path.name} is written, commit it yourself"
            )
    return _git(root, "rev-parse", "HEAD").stdout.strip()
