"""Round-trip stack file edits: only the release lines change, comments and layout survive."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rollback.ops.stackfile import Release, StackDocument, write_atomic
from rollback.runtime.errors import ConfigError, NotFoundError

STACK = """\
# dev stack: edited by people and by `mlrollback revert`
config:
  aws:region: eu-west-1   # closest region
  mlrollback:endpoints:
    - name: fraud-scorer   # the scorer
      versions:
        v1:
          image: "123.dkr.ecr.eu-west-1.amazonaws.com/fraud:1.0"
          modelDataUrl: s3://bucket/fraud/v1/model.tar.gz
        v2: {image: '123.dkr.ecr.eu-west-1.amazonaws.com/fraud:2.0', modelDataUrl: s3://bucket/v2.tar.gz}
        "2025-07-19": {framework: xgboost, frameworkVersion: "1.7-1"}
      release:
        stable: v1      # the one we trust
        candidate: v2   # rolling out
      strategy:
        type: canary
        steps: [10, 25, 50, 100]
    - name: churn
      versions: {a: {image: x}, b: {image: y}}
      release: {stable: a}
"""


def _doc(tmp_path: Path, text: str = STACK) -> StackDocument:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(text)
    return StackDocument.load(path)


def _changed_lines(diff: str) -> list[str]:
    return [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_dropping_the_candidate_changes_only_that_line_and_keeps_its_comment(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    doc.set_release("fraud-scorer", Release("v1", None))
    assert _changed_lines(doc.diff()) == [
        "-        candidate: v2   # rolling out",
        "+        candidate: null # rolling out",
    ]
    assert doc.release("fraud-scorer") == Release("v1", None)


def test_setting_a_date_like_version_quotes_it_so_it_stays_a_string(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    doc.set_release("fraud-scorer", Release("2025-07-19", None))
    assert '        stable: "2025-07-19" # the one we trust' in doc.render().splitlines()
    assert doc.release("fraud-scorer").stable == "2025-07-19"


def test_adding_a_candidate_to_a_flow_release_stays_in_flow_style(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    doc.set_release("churn", Release("a", "b"))
    assert _changed_lines(doc.diff()) == [
        "-      release: {stable: a}",
        "+      release: {stable: a, candidate: b}",
    ]


def test_adding_a_version_appends_one_line_to_the_catalog(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    added = doc.add_version(
        "fraud-scorer", "v3", {"image": "repo/fraud:3.0", "modelDataUrl": "s3://b/v3, odd"}
    )
    assert added is True
    assert doc.add_version("fraud-scorer", "v3", {"image": "other"}) is False
    assert _changed_lines(doc.diff()) == [
        '+        v3: {image: repo/fraud:3.0, modelDataUrl: "s3://b/v3, odd"}'
    ]
    assert doc.versions("fraud-scorer")["v3"]["modelDataUrl"] == "s3://b/v3, odd"


def test_four_space_sequence_layout_is_preserved(tmp_path: Path) -> None:
    text = (
        "config:\n    mlrollback:endpoints:\n    -   name: e\n"
        "        versions: {v1: {image: x}, v2: {image: y}}\n        release:\n            stable: v2\n"
    )
    doc = _doc(tmp_path, text)
    doc.set_release("e", Release("v1", "v2"))
    assert doc.render() == text.replace("stable: v2\n", "stable: v1\n            candidate: v2\n")


def test_release_naming_an_unknown_version_is_refused_with_the_catalog(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    with pytest.raises(
        ConfigError,
        match=r"release.candidate: 'v9' is not in the version catalog \(known: v1, v2, 2025-07-19\)",
    ):
        doc.set_release("fraud-scorer", Release("v1", "v9"))
    assert doc.render() == STACK


def test_unknown_endpoint_lists_known_ones(tmp_path: Path) -> None:
    with pytest.raises(
        NotFoundError, match=r"endpoint 'nope' is not declared \(known: fraud-scorer, churn\)"
    ):
        _doc(tmp_path).release("nope")


def test_write_atomic_replaces_content_keeps_mode_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(STACK)
    os.chmod(path, 0o640)
    write_atomic(path, "config: {}\n")
    assert path.read_text() == "config: {}\n"
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["Pulumi.dev.yaml"]


def test_write_atomic_failure_leaves_the_original_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(STACK)

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, "config: {}\n")
    assert path.read_text() == STACK
    assert [p.name for p in tmp_path.iterdir()] == ["Pulumi.dev.yaml"]


@pytest.mark.parametrize(
    "versions",
    [
        # the last version's flow mapping closes on a later line: the edit would not parse
        "      versions:\n        v1: {image: a/b:1,\n             modelDataUrl: s3://m/1\n            }\n",
        # the catalog itself is a multi-line flow mapping: the '}' found is v1's, the edit would nest v2
        "      versions: {\n        v1: {image: a/b:1, modelDataUrl: s3://m/1}\n      }\n",
    ],
)
def test_adding_a_version_where_it_cannot_be_placed_is_a_clean_refusal(tmp_path: Path, versions: str) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(
        "config:\n  mlrollback:endpoints:\n    - name: e\n      release: {stable: v1}\n" + versions
    )
    doc = StackDocument.load(path)

    with pytest.raises(ConfigError, match="cannot locate where to"):
        doc.add_version("e", "v2", {"image": "a/b:2", "modelDataUrl": "s3://m/2"})
    assert doc.render() == path.read_text()  # the document is left as it was
