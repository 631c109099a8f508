"""autoremedy.contract.registry: the MANIFEST literal read without running the module, in
either layout, and refused with the path when it is not a literal."""
import pytest

from autoremedy.contract.registry import ManifestError, manifests, read_manifest


def test_a_manifest_is_parsed_not_executed_in_either_layout(tmp_path):
    laid_out = tmp_path / "laid_out.py"
    laid_out.write_text('raise SystemExit("executed")\nMANIFEST = {\n    "name": "a-b",\n'
                        '    "thresholds": (None, "1:"),\n}\nNAME = MANIFEST["name"]\n')
    one_line = tmp_path / "one_line.py"
    one_line.write_text('raise SystemExit("executed")\nMANIFEST = {"name": "c", "timeout": 2.5}\n')
    assert read_manifest(str(laid_out)) == {"name": "a-b", "thresholds": (None, "1:")}
    assert read_manifest(str(one_line)) == {"name": "c", "timeout": 2.5}
    (tmp_path / "none.py").write_text("NAME = 'x'\n")
    assert read_manifest(str(tmp_path / "none.py")) is None
    assert sorted(manifests(str(tmp_path))) == ["a-b", "c"]


@pytest.mark.parametrize("text", ['MANIFEST = {\n    "name": NAME,\n}\n', 'MANIFEST = {"name": "Bad Name"}\n',
                                  'MANIFEST = ["name"]\n'])
def test_a_manifest_that_is_not_a_literal_dict_with_a_name_is_refused(tmp_path, text):
    path = tmp_path / "broken.py"
    path.write_text(text)
    with pytest.raises(ManifestError, match=str(path)):
        read_manifest(str(path))
