"""The README's Python examples run as pasted."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(capsys):
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
  assert blocks, "README.md has no python example"
  for block in blocks:
    exec(compile(block, str(README), "exec"), {})
  lines = capsys.readouterr().out.splitlines()
  # the CLASSP example's comment says 2 of its 4 weights moved
  assert "0.5" in lines
  assert any(line.startswith("penalty at task 1's weights 0.000") for line in lines)
  # UPGD by hand: utilities 1e-3 * (-g * w) = (-5e-4, 1e-3, -2.5e-4), scaled by the first
  # step's bias correction 1e-3 * max = 1e-6: gates sigmoid(500), sigmoid(-1000), sigmoid(250)
  assert "UPGD steps [-0.05, 0.0, -0.05]" in lines
