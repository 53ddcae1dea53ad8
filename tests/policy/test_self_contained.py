"""The policy pack ships alone (`pulumi policy publish` uploads only policy/): nothing outside it."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import botocore.session

import policy.policies as pack
from infra.limits import has_local_instance_storage

POLICY = Path(__file__).resolve().parents[2] / "policy"


def test_the_pack_imports_only_the_standard_library_pulumi_policy_and_itself() -> None:
    own = {p.stem for p in POLICY.glob("*.py")}
    allowed = set(sys.stdlib_module_names) | {"pulumi_policy", "__future__"} | own
    foreign = []
    for path in POLICY.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            foreign += [f"{path.name}: {n}" for n in names if n.split(".")[0] not in allowed]
    assert foreign == []
    assert "../" not in (POLICY / "PulumiPolicy.yaml").read_text()  # its own virtualenv


def test_a_copy_of_the_folder_alone_loads_its_policies(tmp_path: Path) -> None:
    shutil.copytree(POLICY, tmp_path / "pack", ignore=shutil.ignore_patterns("__pycache__", "venv"))
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('infra', 'rollback', 'policy'):\n"
        "            raise ImportError(f'outside the pack: {name}')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.path.insert(0, {str(tmp_path / 'pack')!r})\n"
        "import policies\n"
        "print(len(policies.POLICIES))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == len(pack.POLICIES)


def test_the_packs_instance_storage_rule_is_the_programs_on_every_sagemaker_instance_type() -> None:
    model = botocore.session.get_session().get_service_model("sagemaker")
    types = model.shape_for("ProductionVariantInstanceType").enum
    assert len(types) > 100
    differ = [t for t in types if pack.has_local_instance_storage(t) != has_local_instance_storage(t)]
    assert differ == []
    assert pack.has_local_instance_storage("ml.g5.xlarge") and not pack.has_local_instance_storage(
        "ml.m5.large"
    )
