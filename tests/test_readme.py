"""The README promises what the code does: the exit-code table and the two quick-start commands."""

from __future__ import annotations

import re
from pathlib import Path

from rollback.runtime import errors

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(title)
    return README[start : README.index("\n## ", start + 1) if "\n## " in README[start + 1 :] else None]


def test_every_error_class_has_its_exit_code_in_the_readme_table() -> None:
    table = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", _section("Exit codes"), flags=re.MULTILINE))
    classes = [
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type)
        and issubclass(cls, errors.MLRollbackError)
        and cls is not errors.MLRollbackError
    ]
    codes = {cls.__name__: cls.exit_code for cls in classes}
    assert len(set(codes.values())) == len(codes), f"two error classes share an exit code: {codes}"
    missing = {name: code for name, code in codes.items() if str(code) not in table}
    assert missing == {}, f"README exit-code table lacks {missing}"


def test_quick_start_is_exactly_two_commands_that_the_makefile_defines() -> None:
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", README, flags=re.DOTALL)
    assert block, "README has no Quick start bash block"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["make drill", "make test"]
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    assert "drill: $(STAMP)\n\t$(VENV)/bin/mlrollback drill --stack dev --sandbox" in makefile
    assert re.search(r"^test: \$\(STAMP\)\n(\t.*\n)*\t\$\(PY\) -m pytest", makefile, flags=re.MULTILINE)
