"""YAML aliases: a bomb or a self-containing alias is a located error, in bounded memory."""

from __future__ import annotations

import resource
import subprocess
import sys

from mummi_spec.loader import MAX_ALIASED_NODES, load_text
from tests.conftest import SPECS

# Well above what `mummi validate` needs (about 30 MB resident), far below what the bomb
# below expands to (9**9 nodes: gigabytes).
_ADDRESS_SPACE = 512 * 2**20


def _bomb(levels: int = 9, width: int = 9) -> str:
    lines = ["spec: mummi/v1", "l0: &l0 [" + ", ".join(["x"] * width) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]"
              for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_ADDRESS_SPACE, _ADDRESS_SPACE))


def test_an_alias_bomb_is_a_located_error_in_bounded_memory(tmp_path):
    spec = tmp_path / "bomb.yaml"
    spec.write_text(_bomb())
    assert len(spec.read_bytes()) < 1024
    done = subprocess.run([sys.executable, "-m", "mummi_spec", "validate", str(spec)],
                          capture_output=True, text=True, preexec_fn=_limit_memory,
                          timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    # Aliases on l1..l3 add 90 + 819 + 7,380 nodes; the first *l3 (7,381 more) crosses
    # 10,000, on line 6.
    assert done.stderr.startswith(f"{spec}:6:")
    assert f"more than {MAX_ALIASED_NODES} nodes" in done.stderr
    assert "hint:" in done.stderr


def test_an_alias_inside_the_node_it_names_is_a_located_error(tmp_path):
    spec = tmp_path / "loop.yaml"
    spec.write_text("spec: mummi/v1\nname: &n [1, *n]\n")
    done = subprocess.run([sys.executable, "-m", "mummi_spec", "validate", str(spec)],
                          capture_output=True, text=True, preexec_fn=_limit_memory,
                          timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"{spec}:2:14: error: alias '*n' refers to a node that "
                                  "contains it"), done.stderr


def test_a_spec_with_a_few_aliases_loads_as_written():
    text = (SPECS / "mini.yaml").read_text()
    with_alias = text.replace("  latent: {backend: filesystem, path: latent}",
                              "  latent: &fs {backend: filesystem, path: latent}").replace(
        "  feedback: {backend: filesystem, path: feedback}", "  feedback: *fs")
    assert with_alias.count("*fs") == 1
    data, smap = load_text(with_alias, "mini.yaml")
    assert data["stores"]["feedback"] == {"backend": "filesystem", "path": "latent"}
    assert data == {**load_text(text, "mini.yaml")[0], "stores": data["stores"]}
    assert smap.locate(("stores", "feedback", "path")).line == \
        smap.locate(("stores", "latent", "path")).line


def test_aliases_up_to_the_limit_are_accepted():
    block = "[" + ", ".join(["x"] * 99) + "]"  # 100 nodes
    uses = MAX_ALIASED_NODES // 100
    text = "spec: mummi/v1\nb: &b " + block + "\nu: [" + ", ".join(["*b"] * uses) + "]\n"
    data, _ = load_text(text, "ok.yaml")
    assert len(data["u"]) == uses
